"""Several HTTP processes on one port (shopkit.http.server.serve_processes): exactly one runs the
workers; when it dies the supervisor starts another in its place, which takes them over (the
API-only one that survived does not); SIGTERM stops them all. Whichever process answers a
scrape, /metrics shows the whole service, across restarts. And each process opens its pools at
start, so load opens no connection."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import text

from shopkit.ops import metrics
from shopkit.ops.runtime import Runtime
from shopkit.settings import ServiceSettings
from shopkit.testing import asyncpg_dsn, eventually, free_port, unique

TESTS = Path(__file__).resolve().parent


def _env(settings: ServiceSettings, port: int, marks: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "ROLES_MARKS": str(marks),
        "SERVICE_NAME": unique("roles"),
        "DATABASE_URL": settings.database_url,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "HTTP_PORT": str(port),
        "HTTP_WORKERS": "2",
        "LOG_LEVEL": "INFO",
    }


def _start_supervisor(
    settings: ServiceSettings, tmp_path: Path, port: int | None = None, name: str = "out"
) -> tuple[int, Path, Path, subprocess.Popen[bytes]]:
    """The test app served by two processes on `port` (a free one by default): (the port, the
    file of the pids that run the workers, the output of them all, the supervisor)."""
    port = port or free_port()
    marks = tmp_path / f"{name}.marks"
    output = tmp_path / f"{name}.log"
    with output.open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "apps.roles_app"],
            env=_env(settings, port, marks),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return port, marks, output, supervisor


def _pids(marks: Path) -> list[int]:
    return [int(line) for line in marks.read_text().split()] if marks.exists() else []


async def _runtimes_started(output: Path, count: int) -> None:
    """Waits until the supervisor's output shows `count` runtimes started (2: both processes;
    3: and the replacement of a dead one)."""

    def runtimes() -> int:
        return output.read_text().count("runtime_started")

    async def started() -> bool:
        return runtimes() == count

    await eventually(started, timeout_s=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_workers_move_to_the_process_started_in_place_of_a_dead_one(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    port, marks, output, supervisor = _start_supervisor(settings, tmp_path)
    try:
        await _runtimes_started(output, 2)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        [first] = _pids(marks)

        os.kill(first, signal.SIGKILL)

        async def taken_over() -> bool:
            return len(_pids(marks)) == 2

        await eventually(taken_over, timeout_s=60)
        [_, second] = _pids(marks)
        assert second != first
        assert _alive(second)
        assert not _alive(first)
        assert (
            output.read_text().count("runtime_started") == 3
        )  # the replacement; the API-only survivor kept its part
        assert "http_process_died" in output.read_text()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(supervisor.wait, 30)
    assert code == 0
    assert output.read_text().count("runtime_stopped") == 2  # each one shut down gracefully


async def test_the_processes_stop_when_their_supervisor_is_killed(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    port, _, output, supervisor = _start_supervisor(settings, tmp_path)
    try:
        await _runtimes_started(output, 2)
    finally:
        supervisor.kill()  # SIGKILL: no chance to stop its processes
        await asyncio.to_thread(supervisor.wait, 30)

    async def all_ended() -> bool:
        return output.read_text().count("runtime_stopped") == 2

    await eventually(all_ended, timeout_s=30)  # orphans stop, gracefully
    with pytest.raises(httpx.ConnectError):  # and nobody serves the port any more
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/healthz")
    left = metrics.directory_of("127.0.0.1", port)
    assert left.is_dir()  # for the next supervisor on the port to empty
    shutil.rmtree(left)


async def _ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def test_a_supervisor_whose_port_is_still_held_waits_for_it_then_serves(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    """As after a crash: the old supervisor's processes hold the port while they stop."""
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    _, _, output, supervisor = _start_supervisor(settings, tmp_path, port)
    try:

        async def waiting() -> bool:
            return "http_port_busy_waiting" in output.read_text()

        await eventually(waiting, timeout_s=30)
        assert supervisor.poll() is None  # it waits, it did not exit
        holder.close()

        async def serving() -> bool:
            return await _ready(port)

        await eventually(serving, timeout_s=60)
        assert "http_port_free" in output.read_text()
    finally:
        holder.close()
        supervisor.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(supervisor.wait, 30)
    assert code == 0


async def test_a_supervisor_started_right_after_one_was_killed_takes_the_port(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    """kill -9 of a two-process service, and at once a new one on its port (`make run` again)."""
    port, _, first_output, first = _start_supervisor(settings, tmp_path, name="first")

    async def first_ready() -> bool:
        return first_output.read_text().count("runtime_started") == 2 and await _ready(port)

    await eventually(first_ready, timeout_s=60)
    await _ask_pids(port, 20)
    assert await _pid_requests_counted(port) == 20
    first.kill()
    await asyncio.to_thread(first.wait, 30)
    _, _, output, second = _start_supervisor(settings, tmp_path, port, name="second")
    try:

        async def second_ready() -> bool:
            return output.read_text().count("runtime_started") == 2 and await _ready(port)

        await eventually(second_ready, timeout_s=90)
        assert second.poll() is None
        assert first_output.read_text().count("runtime_stopped") == 2  # the orphans are gone
        assert await _pid_requests_counted(port) == 0  # a run counts its own requests only
    finally:
        second.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(second.wait, 30)
    assert code == 0
    assert not metrics.directory_of("127.0.0.1", port).exists()


async def _scrape(port: int, name: str) -> list[Sample]:
    """The samples called `name` in one scrape (on a connection of its own: either process may
    take it)."""
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    families = text_string_to_metric_families(response.text)
    return [sample for family in families for sample in family.samples if sample.name == name]


async def _pid_requests_counted(port: int) -> float:
    samples = await _scrape(port, "http_request_duration_seconds_count")
    return sum(sample.value for sample in samples if sample.labels["route"] == "/pid")


async def _ask_pids(port: int, n: int) -> list[int]:
    """`n` requests at once to /pid, each on a connection of its own (the kernel hands each to
    one of the processes): the pids that answered."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        responses = await asyncio.gather(
            *(http.get(f"http://127.0.0.1:{port}/pid") for _ in range(n))
        )
    return [int(response.json()) for response in responses]


async def _ask_both_processes(port: int) -> list[int]:
    """Requests to /pid until both processes have answered some: the pids that answered."""
    answered: list[int] = []
    while len(set(answered)) < 2:
        assert len(answered) < 2_000, "one process took every connection"
        answered += await _ask_pids(port, 20)
    return answered


async def test_one_scrape_counts_the_requests_of_both_processes_across_a_restart(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    port, marks, output, supervisor = _start_supervisor(settings, tmp_path)
    try:
        await _runtimes_started(output, 2)
        assert metrics.directory_of("127.0.0.1", port).is_dir()
        answered = await _ask_both_processes(port)
        sent = len(answered)
        for _ in range(10):  # whichever process takes the scrape
            assert await _pid_requests_counted(port) == sent

        [first] = _pids(marks)
        os.kill(first, signal.SIGKILL)

        await _runtimes_started(output, 3)
        for _ in range(10):  # the dead process's requests stay counted, once
            assert await _pid_requests_counted(port) == sent
        sent += len(await _ask_pids(port, 20))
        for _ in range(10):
            assert await _pid_requests_counted(port) == sent
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(supervisor.wait, 30)
    assert code == 0
    assert not metrics.directory_of("127.0.0.1", port).exists()  # the supervisor's, gone with it


async def test_a_gauge_shows_the_live_processes_once(
    settings: ServiceSettings, tmp_path: Path
) -> None:
    """event_loop_lag_seconds: every process measures its own; the service's is the worst of the
    live ones, and a dead process's value leaves with it."""
    port, _, output, supervisor = _start_supervisor(settings, tmp_path)
    try:

        async def lag() -> float | None:
            samples = await _scrape(port, "event_loop_lag_seconds")  # none before a first tick
            assert len(samples) <= 1  # one series for the service, not one per process
            assert all(set(sample.labels) == {"service"} for sample in samples)  # no pid label
            return samples[0].value if samples else None

        async def on_time() -> bool:
            value = await lag()
            return value is not None and 0 <= value < 1

        async def late() -> bool:
            value = await lag()
            return value is not None and value >= 1

        await _runtimes_started(output, 2)
        await eventually(on_time, timeout_s=30)
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(f"http://127.0.0.1:{port}/hog", params={"seconds": 2.5})
        hogged = int(response.json())
        await eventually(late, timeout_s=30)  # one process late: the service is late

        os.kill(hogged, signal.SIGKILL)

        await _runtimes_started(output, 3)
        await eventually(on_time, timeout_s=30)  # its last value went with it
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(supervisor.wait, 30)
    assert code == 0


async def _backends(database_url: str, application_name: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        found = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
        )
    finally:
        await connection.close()
    return int(found)


async def test_a_process_opens_its_pools_at_start_and_load_opens_none(
    settings: ServiceSettings,
) -> None:
    name = unique("fill")
    config = settings.model_copy(
        update={"service_name": name, "db_pool_size": 5, "db_worker_pool_size": 3}
    )
    runtime = Runtime(config, publishes=False)
    await runtime.start()
    try:
        assert await _backends(config.database_url, name) == 5 + 3

        async def query() -> None:
            async with runtime.api_sessions() as session:
                await session.execute(text("SELECT pg_sleep(0.05)"))

        await asyncio.gather(*(query() for _ in range(20)))
        assert await _backends(config.database_url, name) == 5 + 3
    finally:
        await runtime.stop()
    assert await _backends(config.database_url, name) == 0

    api_only = Runtime(config.model_copy(update={"run_workers": False}), publishes=False)
    await api_only.start()
    try:
        assert await _backends(config.database_url, name) == 5  # no workers: no workers' pool
    finally:
        await api_only.stop()
