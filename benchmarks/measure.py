"""What a scenario cost: CPU seconds per process (from /proc) and PostgreSQL connections opened.

CPU of a process group = user + system time of each live process of the group and of its
descendants, plus the time of the children they have already reaped (cutime + cstime). A
backend that exits during a scenario keeps counting, in its parent's cutime: postgres is
measured from the postmaster down, so its short-lived backends are included. wrk's own time
comes from its rusage (see wrk.py)."""

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

TICK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    comm: str
    own_s: float
    reaped_s: float


def _stat(pid: int) -> Stat | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14..17
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return Stat(pid, int(fields[1]), comm, (utime + stime) / TICK, (cutime + cstime) / TICK)


def processes() -> dict[int, Stat]:
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[stat.pid] = stat
    return stats


def _cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class Groups:
    """Named process trees (root pids, measured with their descendants) and single processes
    measured alone (this benchmark's own process, whose children are the services)."""

    trees: dict[str, list[int]] = field(default_factory=dict)
    alone: dict[str, int] = field(default_factory=dict)

    def add_infrastructure(self) -> None:
        """PostgreSQL (from its postmaster), the Kafka broker, redis-server and the Zipkin
        server, when local."""
        stats = processes()
        postgres = [
            s.pid
            for s in stats.values()
            if s.comm in ("postgres", "postmaster")
            and stats.get(s.ppid, Stat(0, 0, "", 0, 0)).comm not in ("postgres", "postmaster")
        ]
        kafka = [
            s.pid for s in stats.values() if s.comm == "java" and "kafka" in _cmdline(s.pid).lower()
        ]
        redis = [s.pid for s in stats.values() if s.comm.startswith("redis-server")]
        zipkin = [s.pid for s in stats.values() if s.comm == "java" and "zipkin" in _cmdline(s.pid)]
        for name, pids in (
            ("postgres", postgres),
            ("kafka", kafka),
            ("redis", redis),
            ("zipkin", zipkin),
        ):
            if pids:
                self.trees[name] = pids

    def cpu(self) -> dict[str, float]:
        stats = processes()
        children: dict[int, list[int]] = {}
        for s in stats.values():
            children.setdefault(s.ppid, []).append(s.pid)
        totals = {}
        for name, roots in self.trees.items():
            seen: set[int] = set()
            todo = [pid for pid in roots if pid in stats]
            while todo:
                pid = todo.pop()
                if pid not in seen:
                    seen.add(pid)
                    todo.extend(children.get(pid, []))
            totals[name] = sum(stats[p].own_s + stats[p].reaped_s for p in seen)
        for name, pid in self.alone.items():
            stat = stats.get(pid)
            totals[name] = stat.own_s if stat else 0.0
        return totals


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 3) for name in after}


@dataclass(frozen=True)
class PgSnapshot:
    at: Any
    sessions: dict[str, int]
    backends: int


class Connections:
    """Connections to the databases of this run: opened since a snapshot and still open
    (pg_stat_activity.backend_start), and sessions started (pg_stat_database.sessions, which
    also counts connections already closed again; backends report it within about a second)."""

    def __init__(self, connection: asyncpg.Connection, databases: dict[str, str]) -> None:
        self.connection = connection
        self.databases = databases
        """name in the report → database name"""

    async def snapshot(self) -> PgSnapshot:
        await self.connection.execute("SELECT pg_stat_clear_snapshot()")
        at = await self.connection.fetchval("SELECT clock_timestamp()")
        rows = await self.connection.fetch(
            "SELECT datname, sessions FROM pg_stat_database WHERE datname = ANY($1::text[])",
            list(self.databases.values()),
        )
        backends = await self.connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
        return PgSnapshot(at, {r["datname"]: int(r["sessions"] or 0) for r in rows}, backends)

    async def since(self, before: PgSnapshot) -> dict[str, Any]:
        after = await self.snapshot()
        rows = await self.connection.fetch(
            "SELECT datname, count(*) AS n FROM pg_stat_activity"
            " WHERE backend_start > $1 AND datname = ANY($2::text[]) GROUP BY datname",
            before.at,
            list(self.databases.values()),
        )
        still_open = {r["datname"]: int(r["n"]) for r in rows}
        return {
            "opened_still_open": {
                name: still_open.get(db, 0) for name, db in self.databases.items()
            },
            "sessions_started": {
                name: after.sessions.get(db, 0) - before.sessions.get(db, 0)
                for name, db in self.databases.items()
            },
            "backends_before": before.backends,
            "backends_after": after.backends,
        }


@dataclass
class Figures:
    seconds: float
    cpu_s: dict[str, float]
    connections: dict[str, Any]


class Meter:
    """Wraps a measured stretch: `start()` then `stop(extra_cpu)`."""

    def __init__(self, groups: Groups, connections: Connections) -> None:
        self.groups = groups
        self.connections = connections
        self._cpu: dict[str, float] = {}
        self._pg: PgSnapshot | None = None
        self._t0 = 0.0

    async def start(self) -> None:
        self._pg = await self.connections.snapshot()
        self._cpu = self.groups.cpu()
        self._t0 = time.monotonic()

    async def stop(self, extra_cpu: Iterable[tuple[str, float]] = ()) -> Figures:
        cpu = cpu_delta(self._cpu, self.groups.cpu())
        seconds = time.monotonic() - self._t0
        for name, value in extra_cpu:
            cpu[name] = round(cpu.get(name, 0.0) + value, 3)
        assert self._pg is not None
        return Figures(seconds, cpu, await self.connections.since(self._pg))
