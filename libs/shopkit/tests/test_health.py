"""Health that tells the truth: /healthz (liveness) fails when a part of the process died or its
event loop was blocked, so the orchestrator restarts it; /readyz names a degraded dependency
without taking the whole process out of service."""

import asyncio
import time

import httpx

from shopkit.http.app import create_app
from shopkit.ops.runtime import Runtime
from shopkit.settings import ServiceSettings
from shopkit.testing import eventually, running_server


async def test_liveness_fails_when_a_worker_died(settings: ServiceSettings) -> None:
    crash = asyncio.Event()

    async def consumer_that_crashes(_: Runtime, stop: asyncio.Event) -> None:
        await crash.wait()
        raise RuntimeError("a bug in the loop")

    runtime = Runtime(
        settings.model_copy(update={"run_workers": False}), components=[consumer_that_crashes]
    )
    async with (
        running_server(create_app(runtime, title="t", routers=[])) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        assert (await http.get("/healthz")).status_code == 200
        crash.set()

        async def dead() -> bool:
            return (await http.get("/healthz")).status_code == 503

        await eventually(dead, timeout_s=10)
        answer = (await http.get("/healthz")).json()
        assert "consumer_that_crashes died" in answer["detail"]
        assert (await http.get("/readyz")).status_code == 503


async def test_liveness_fails_after_the_event_loop_was_blocked(settings: ServiceSettings) -> None:
    block = asyncio.Event()

    async def stray_blocking_call(_: Runtime, stop: asyncio.Event) -> None:
        await block.wait()
        time.sleep(4.0)  # noqa: ASYNC251 (the fault under test)
        await stop.wait()

    config = settings.model_copy(update={"run_workers": False, "liveness_max_loop_lag_s": 2.0})
    runtime = Runtime(config, components=[stray_blocking_call])
    async with (
        running_server(create_app(runtime, title="t", routers=[])) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        block.set()

        async def blocked() -> bool:
            return (await http.get("/healthz")).status_code == 503

        await eventually(blocked, timeout_s=10, interval_s=0.05)
        assert "event loop was blocked" in (await http.get("/healthz")).json()["detail"]

        async def recovered() -> bool:
            return (await http.get("/healthz")).status_code == 200

        await eventually(recovered, timeout_s=10)


async def test_a_degraded_dependency_is_named_and_the_process_stays_ready(
    settings: ServiceSettings,
) -> None:
    async def cache_down() -> None:
        raise ConnectionRefusedError("cache unreachable")

    runtime = Runtime(settings.model_copy(update={"run_workers": False}))
    runtime.degraded_checks["cache"] = cache_down
    async with (
        running_server(create_app(runtime, title="t", routers=[])) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "degraded": {"cache": "cache unreachable"}}
