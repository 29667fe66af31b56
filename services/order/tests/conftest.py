"""The order service under the shared fixtures of shopkit.testing.plugin, and its own: an
API-only instance, and the saga driven as the other services would drive it."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import orjson
import pytest

from order.config import Settings
from order.main import MIGRATIONS, create_app
from shop_contracts import (
    Envelope,
    Event,
    ExcludedLine,
    ExclusionReason,
    OrderPriced,
    PaymentCompleted,
    ReservedLine,
    StockReserved,
    topics,
)
from shopkit.testing import collect, eventually, publish, running_server, topic_reader
from shopkit.testing.plugin import service_fixtures
from shopkit.testing.service import ServiceUnderTest

# The order service with its workers: consumers, outbox relay, deadline sweeper.
globals().update(
    service_fixtures(
        ServiceUnderTest(
            "order",
            Settings,
            create_app,
            MIGRATIONS,
            overrides={"deadline_sweep_interval_s": 0.2},
            connections=200,
        )
    )
)


ApiOnly = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(scope="session")
def api_only(service: ServiceUnderTest, settings: Settings) -> ApiOnly:
    """Starts another API process over the same database, without workers (no consumer, no
    sweeper), and yields a client of it: it learns that an order ended only through NOTIFY."""

    @asynccontextmanager
    async def instance(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        config = settings.model_copy(update={"run_workers": False, **overrides})
        async with (
            running_server(create_app(config)) as url,
            service.client(url, settings) as client,
        ):
            yield client

    return instance


class Saga:
    """Drives the order service as the other services would: places orders over HTTP, sends
    their answers to the (prefixed) topics, and looks at what the order service did."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings, db: asyncpg.Connection):
        self.client = client
        self.settings = settings
        self.db = db

    async def place(
        self,
        user_id: int,
        items: list[tuple[int, int]],
        user_coupon_id: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        r = await self.client.post(
            "/orders",
            json={
                "user_id": user_id,
                "items": [{"product_id": p, "quantity": q} for p, q in items],
                "user_coupon_id": user_coupon_id,
            },
            headers=headers,
        )
        assert r.status_code == 202, r.text
        body: dict[str, Any] = r.json()
        return body

    async def send(self, *events: Event) -> list[Envelope]:
        """Publishes each event as its service would (one producer call each, in order)."""
        return [await publish(self.settings.topic(e.topic), e) for e in events]

    async def processed(self, *envelopes: Envelope) -> None:
        """Until the saga consumer has committed its handling of every envelope."""
        ids = [e.event_id for e in envelopes]
        query = "SELECT count(*) FROM processed_events WHERE event_id = ANY($1::uuid[])"
        await eventually(lambda: self._all_handled(query, ids))

    async def _all_handled(self, query: str, ids: list[UUID]) -> bool:
        return bool(await self.db.fetchval(query, ids) == len(ids))

    async def order(self, order_id: str | UUID) -> dict[str, Any]:
        r = await self.client.get(f"/orders/{order_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def ended(self, order_id: str | UUID) -> dict[str, Any]:
        """The order once it is PAID or FAILED."""

        async def final() -> dict[str, Any] | None:
            order = await self.order(order_id)
            return order if order["status"] != "PENDING" else None

        result: dict[str, Any] = await eventually(final)
        return result

    async def outbox(self, order_id: str | UUID) -> list[tuple[str, dict[str, Any]]]:
        """The events the order service emitted for this order, oldest first."""
        rows = await self.db.fetch(
            "SELECT event_type, envelope FROM outbox WHERE key = $1 ORDER BY id", str(order_id)
        )
        return [(r["event_type"], orjson.loads(r["envelope"])["payload"]) for r in rows]

    @staticmethod
    def reserved(
        order: dict[str, Any], prices: dict[int, int], excluded: dict[int, str] | None = None
    ) -> StockReserved:
        """The product service's answer: the lines in `prices` reserved at those unit prices."""
        excluded = excluded or {}
        return StockReserved(
            order_id=order["order_id"],
            user_id=order["user_id"],
            user_coupon_id=order["user_coupon_id"],
            reserved=[
                ReservedLine(
                    product_id=line["product_id"],
                    name=f"product {line['product_id']}",
                    quantity=line["quantity"],
                    unit_price=prices[line["product_id"]],
                )
                for line in order["lines"]
                if line["product_id"] in prices
            ],
            excluded=[
                ExcludedLine(
                    product_id=line["product_id"],
                    quantity=line["quantity"],
                    reason=ExclusionReason(excluded[line["product_id"]]),
                )
                for line in order["lines"]
                if line["product_id"] in excluded
            ],
        )

    @staticmethod
    def priced(order: dict[str, Any], subtotal: int, discount: int = 0) -> OrderPriced:
        return OrderPriced(
            order_id=order["order_id"],
            user_id=order["user_id"],
            user_coupon_id=order["user_coupon_id"],
            subtotal=subtotal,
            discount=discount,
            total=subtotal - discount,
        )

    @staticmethod
    def paid(order: dict[str, Any], amount: int) -> PaymentCompleted:
        return PaymentCompleted(
            order_id=order["order_id"], user_id=order["user_id"], amount=amount, balance_after=0
        )

    async def published(self, order_id: str | UUID, event_type: str) -> dict[str, Any]:
        """The payload of the first `event_type` for this order read back from Kafka."""
        wanted = UUID(str(order_id))

        def matches(record: Any) -> bool:
            envelope = Envelope.model_validate_json(record.value)
            return envelope.order_id == wanted and envelope.event_type == event_type

        async with topic_reader(self.settings.topic(topics.ORDER_EVENTS)) as reader:
            records = await collect(reader, lambda seen: any(matches(r) for r in seen))
        envelope = Envelope.model_validate_json(next(r for r in records if matches(r)).value)
        return envelope.payload


@pytest.fixture
async def saga(client: httpx.AsyncClient, settings: Settings, db: asyncpg.Connection) -> Saga:
    return Saga(client, settings, db)
