"""Running wrk (the compiled load generator) with one of the Lua scripts of benchmarks/lua and
reading the JSON its done() prints. Python never generates load: it only starts wrk."""

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).parent / "lua"
MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class Load:
    """One wrk run: `script` is a file of benchmarks/lua, `args` reach its init() as key=value."""

    url: str
    script: str
    seconds: float
    connections: int
    threads: int
    timeout_s: float
    headers: dict[str, str] = field(default_factory=dict)
    args: dict[str, str | int | float] = field(default_factory=dict)


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    statuses: dict[str, int]
    errors: dict[str, int]
    latency_us: dict[str, float]
    cpu_s: float
    """wrk's own CPU time (user + system), from its rusage."""

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def count(self, status: str) -> int:
        """Responses whose status (and problem code, for errors) starts with `status`."""
        return sum(n for key, n in self.statuses.items() if key.startswith(status))

    @property
    def socket_errors(self) -> int:
        return sum(n for kind, n in self.errors.items() if kind != "status")

    def ms(self, percentile: str) -> float:
        return self.latency_us.get(percentile, 0.0) / 1000

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "rate_per_s": round(self.rate, 1),
            "statuses": self.statuses,
            "errors": self.errors,
            "latency_ms": {k: round(v / 1000, 3) for k, v in self.latency_us.items()},
            "wrk_cpu_s": round(self.cpu_s, 3),
        }


def executable() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)")
    return path


def version() -> str:
    """wrk prints its version banner (and usage) on `-v`."""
    out = subprocess.run([executable(), "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()[:1]
    match = re.search(r"wrk\s+(\S+)", first[0]) if first else None
    return match.group(1) if match else "unknown"


def command(load: Load, script_path: Path) -> list[str]:
    cmd = [
        executable(),
        f"-t{load.threads}",
        f"-c{max(load.connections, load.threads)}",
        f"-d{max(1, round(load.seconds))}s",
        f"--timeout={max(1, round(load.timeout_s))}s",
        "-s",
        str(script_path),
    ]
    for name, value in load.headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += [load.url, "--", f"threads={load.threads}", f"connections={load.connections}"]
    cmd += [f"{key}={value}" for key, value in load.args.items()]
    return cmd


def parse(stdout: str, cpu_s: float) -> WrkResult:
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no {MARKER.strip()} line:\n{stdout}")
    data = json.loads(line[len(MARKER) :])
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        statuses={str(k): int(v) for k, v in data["statuses"].items()},
        errors={str(k): int(v) for k, v in data["errors"].items()},
        latency_us={str(k): float(v) for k, v in data["latency_us"].items()},
        cpu_s=cpu_s,
    )


def _run_blocking(cmd: list[str]) -> tuple[int, str, str, float]:
    """Runs wrk and waits for it with wait4, which also gives its CPU time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_utime + usage.ru_stime,
        )


async def run(load: Load) -> WrkResult:
    """Runs wrk with `script` after the shared lua/common.lua (see there for the arguments)."""
    source = (LUA / load.script).read_text() + "\n" + (LUA / "common.lua").read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-") as script:
        script.write(source)
        script.flush()
        cmd = command(load, Path(script.name))
        code, stdout, stderr, cpu_s = await asyncio.to_thread(_run_blocking, cmd)
    if code != 0:
        raise RuntimeError(f"wrk exited with {code}: {stderr.strip() or stdout.strip()}")
    return parse(stdout, cpu_s)
