"""The product service under the shared fixtures of shopkit.testing.plugin, and its own: new
products, and waiting until its consumers caught up; and the order events the reservation
tests (unit and integration) feed the service."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from product.config import Settings
from product.main import MIGRATIONS, create_app
from product.service.handlers import CONSUMERS
from shop_contracts import FailureReason, OrderCreated, OrderFailed, OrderLine, topics
from shopkit.testing import KAFKA, eventually, topic_reader
from shopkit.testing.plugin import Token, service_fixtures
from shopkit.testing.service import ServiceUnderTest

NewProduct = Callable[..., Awaitable[dict[str, Any]]]
BUYER = 42
"""The user of every order `order_created` makes."""


def order_created(*lines: tuple[int, int], user_coupon_id: int | None = None) -> OrderCreated:
    """A new order of BUYER's: (product id, quantity) lines."""
    return OrderCreated(
        order_id=uuid.uuid4(),
        user_id=BUYER,
        lines=[OrderLine(product_id=p, quantity=q) for p, q in lines],
        user_coupon_id=user_coupon_id,
    )


def order_failed(order: OrderCreated) -> OrderFailed:
    """The saga gave `order` up (for a reason the stock does not care about)."""
    return OrderFailed(
        order_id=order.order_id, user_id=order.user_id, reason=FailureReason.INSUFFICIENT_BALANCE
    )


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
