"""A PostgreSQL server of a test's own, to restart and kill at will: the shared one (the local
stack's, port 5432) serves every other test running meanwhile and is never touched.

It is a throwaway cluster (`initdb` into a temporary folder, Debian's server binaries as
deploy/local/stack/postgres.sh finds them), on a free loopback port, run as the `postgres` OS user
when the tests run as root (PostgreSQL refuses to run as root), with the shop's role as its
superuser and trust authentication on loopback. Durability is off (fsync): a crash of the
postmaster is recovered from the WAL the OS still holds, which is all a kill -9 test needs.
"""

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shopkit.testing.servers import free_port

SERVER_BINARIES = Path("/usr/lib/postgresql")
OS_USER = "postgres"
ROLE = "shop"


def server_binaries() -> Path | None:
    """The newest installed server's bin folder (as stack.sh picks the version), or None."""
    if not SERVER_BINARIES.is_dir():
        return None
    versions = sorted(
        (p for p in SERVER_BINARIES.iterdir() if (p / "bin" / "pg_ctl").is_file()),
        key=lambda p: tuple(int(part) for part in p.name.split(".") if part.isdigit()),
    )
    return versions[-1] / "bin" if versions else None


@dataclass
class PrivatePostgres:
    bin_dir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def admin_dsn(self) -> str:
        """For shopkit.testing.temp_database(admin_dsn=…): the shop's role on `postgres`."""
        return f"postgresql://{ROLE}:{ROLE}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command: Sequence[str] = args
        if os.geteuid() == 0:
            command = ["runuser", "-u", OS_USER, "--", *args]
        done = subprocess.run(command, capture_output=True, text=True, cwd="/", timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}"
                f"\n{self.log_tail()}"
            )
        return done

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, OS_USER)
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            ROLE,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("".join(f"{name} = {value}\n" for name, value in settings.items()))

    def start(self, timeout_s: float = 60.0) -> None:
        """Starts the server and returns once it accepts connections. After a kill -9 the old
        server's backends may still hold its shared memory for a moment (they end as they notice
        the postmaster gone): the start is tried again until they have."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = self._run(
                str(self.bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout_s)),
                check=False,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}")
            time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """`fast`, as `stack.sh restart postgres` stops it: sessions are ended, then it stops."""
        self._run(str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w")

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def kill(self) -> None:
        """kill -9 of the postmaster, as a crash would be (its backends end on their own as they
        notice, the next start recovers from the WAL)."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.02)

    def is_running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        return pid_file.exists() and _alive(self.postmaster_pid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (the postmaster is a child of pg_ctl, which has exited) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@asynccontextmanager
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A running PostgreSQL server of the caller's own until the block ends, then removed."""
    bin_dir = server_binaries()
    if bin_dir is None:
        raise RuntimeError(f"no PostgreSQL server under {SERVER_BINARIES} (stack.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="shop-private-pg-"))
    server = PrivatePostgres(bin_dir, root, free_port())
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        conn = await asyncpg.connect(server.admin_dsn)
        await conn.close()
        yield server
    finally:
        try:
            if server.is_running():
                await asyncio.to_thread(server.stop, "immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)
