"""The relay against real Kafka and PostgreSQL, delivering over real HTTP to the stand-in."""

import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from dataplatform_standin import create_app as create_standin
from order.relay.config import RelaySettings
from order.relay.main import create_app
from shop_contracts import OrderPaid, PaidLine
from shopkit.testing import running_server, temp_database, unique

SECRET = "relay-test-platform-secret"


@pytest.fixture(scope="session")
async def standin_url() -> AsyncIterator[str]:
    async with running_server(create_standin(SECRET)) as url:
        yield url


@pytest.fixture
async def standin(standin_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=standin_url, timeout=30) as client:
        await client.post("/control/reset")
        yield client


@pytest.fixture(scope="session")
async def relay_db() -> AsyncIterator[str]:
    async with temp_database("relay") as url:
        yield url


@pytest.fixture(scope="session")
def make_settings(relay_db: str, standin_url: str) -> Callable[..., RelaySettings]:
    """Settings with fast retries; each call gets its own topic prefix unless one is given."""

    def make(**overrides: Any) -> RelaySettings:
        values: dict[str, Any] = {
            "database_url": relay_db,
            "kafka_topic_prefix": unique("t.relay.") + ".",
            "data_platform_url": standin_url,
            "data_platform_secret": SECRET,
            "max_attempts": 4,
            "backoff_initial_s": 0.02,
            "backoff_max_s": 0.1,
            "backoff_jitter_s": 0.02,
            "request_timeout_s": 5.0,
            "log_json": False,
        }
        return RelaySettings(**{**values, **overrides})

    return make


@pytest.fixture(scope="session")
def settings(make_settings: Callable[..., RelaySettings]) -> RelaySettings:
    return make_settings()


@pytest.fixture(scope="session")
async def relay_url(settings: RelaySettings) -> AsyncIterator[str]:
    """The relay process of most tests (its own HTTP port: /metrics, /readyz)."""
    async with running_server(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="session")
def start_relay() -> Callable[..., AbstractAsyncContextManager[str]]:
    """Another relay process, e.g. misconfigured or delivering to a platform of the test's own."""

    def start(settings: RelaySettings) -> AbstractAsyncContextManager[str]:
        return running_server(create_app(settings))

    return start


@pytest.fixture
def paid_order() -> Callable[..., OrderPaid]:
    """paid_order((product_id, quantity), …): an OrderPaid at 1,000 won a unit."""
    return _paid_order


def _paid_order(*lines: tuple[int, int]) -> OrderPaid:
    paid_lines = [
        PaidLine(product_id=p, name=f"product {p}", quantity=q, unit_price=1_000) for p, q in lines
    ] or [PaidLine(product_id=1, name="product 1", quantity=1, unit_price=1_000)]
    subtotal = sum(line.quantity * line.unit_price for line in paid_lines)
    return OrderPaid(
        order_id=uuid.uuid4(),
        user_id=random.randint(1, 2**62),
        lines=paid_lines,
        subtotal=subtotal,
        discount=0,
        total=subtotal,
        paid_at=datetime.now(UTC),
    )
