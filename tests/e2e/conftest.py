import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest

from shopkit.http.auth import mint
from shopkit.testing import ActAsUser, unique
from shopkit.testing.processes import System, start_system

from .client import Shop

ZIPKIN = os.environ.get("E2E_ZIPKIN_URL", "http://localhost:9411")
TRACING = {
    # Exported to the local stack's Zipkin with `make run`'s sampler (the services' default,
    # parent-based ratio) at ratio 0: only requests that ask for it (a sampled traceparent) are
    # traced, so the other tests pay for the instrumentation alone.
    "OTEL_TRACES_EXPORTER": "zipkin",
    "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{ZIPKIN}/api/v2/spans",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0",
    "OTEL_BSP_SCHEDULE_DELAY": "500",
}


@pytest.fixture(scope="session")
async def system() -> AsyncIterator[System]:
    env = {
        **TRACING,
        "ORDER_SAGA_TIMEOUT_S": "600",
        "REDIS_URL": os.environ.get("E2E_REDIS_URL", "redis://localhost:6379/13"),
        "COUPON_REDIS_KEY_PREFIX": unique("e2e") + ":",
    }
    async with AsyncExitStack() as stack:
        yield await start_system(stack, unique("t.e2e.") + ".", env)


@pytest.fixture
async def shop(system: System) -> AsyncIterator[Shop]:
    limits = httpx.Limits(max_connections=1200, max_keepalive_connections=1200)
    auth = ActAsUser(system.secrets.jwt)
    async with httpx.AsyncClient(timeout=60, limits=limits, auth=auth) as http:
        yield Shop(http, system, admin_token=mint(system.secrets.jwt, "0", "admin"))
