"""The product service under the shared fixtures of shopkit.testing.plugin, and its own: new
products, and waiting until its consumers caught up."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from product.config import Settings
from product.main import MIGRATIONS, create_app
from product.service.handlers import CONSUMERS
from shop_contracts import topics
from shopkit.testing import KAFKA, eventually, topic_reader
from shopkit.testing.plugin import Token, service_fixtures
from shopkit.testing.service import ServiceUnderTest

NewProduct = Callable[..., Awaitable[dict[str, Any]]]


globals().update(
    service_fixtures(ServiceUnderTest("product", Settings, create_app, MIGRATIONS, connections=500))
)


@pytest.fixture
def user_headers(token: Token) -> dict[str, str]:
    """A user who is not an admin."""
    return token("2")


@pytest.fixture
def new_product(client: httpx.AsyncClient, admin: dict[str, str]) -> NewProduct:
    async def create(*, name: str = "Kimchi 1kg", price: int = 12_000, stock: int = 10) -> Any:
        r = await client.post(
            "/products", json={"name": name, "price": price, "stock": stock}, headers=admin
        )
        assert r.status_code == 201, r.text
        return r.json()

    return create


@pytest.fixture
def consumed_everything(settings: Settings) -> Callable[[], Awaitable[None]]:
    """Waits until the service's consumer group has committed every message published so far
    on the order topic: after it, nothing already published can still change anything."""
    topic = settings.topic(topics.ORDER_EVENTS)
    groups = [settings.kafka_topic_prefix + spec.group_id for spec in CONSUMERS]

    async def wait() -> None:
        async with topic_reader(topic) as reader:
            await eventually(lambda: _assigned(reader))
            end = await reader.end_offsets(list(reader.assignment()))
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        try:

            async def caught_up() -> bool:
                for group in groups:
                    committed = await admin.list_consumer_group_offsets(group)
                    for tp, offset in end.items():
                        done = committed.get(tp)
                        if offset > 0 and (done is None or done.offset < offset):
                            return False
                return True

            await eventually(caught_up, timeout_s=60)
        finally:
            await admin.close()

    return wait


async def _assigned(reader: Any) -> bool:
    return bool(reader.assignment())
