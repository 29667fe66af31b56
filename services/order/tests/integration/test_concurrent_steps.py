"""Saga steps of one order racing in separate transactions (as the three consumers do)."""

import asyncio
import uuid

import httpx

from order.config import Settings
from order.service.saga import on_order_priced, on_payment_completed, on_stock_reserved
from shop_contracts import Envelope, OrderPriced, PaymentCompleted, ReservedLine, StockReserved
from shopkit.database.engine import create_engine, session_factory
from shopkit.database.uow import UnitOfWork


async def test_racing_steps_see_each_others_committed_facts(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    """Regression: a step that waited for the order's lock must read the lines the previous
    step committed (a single SELECT … FOR UPDATE with the lines in a subquery would not)."""
    orders = []
    for _ in range(40):
        r = await client.post(
            "/orders", json={"user_id": user_id, "items": [{"product_id": 7, "quantity": 2}]}
        )
        assert r.status_code == 202, r.text
        orders.append(uuid.UUID(r.json()["order_id"]))

    engine = create_engine(settings)
    sessions = session_factory(engine)

    async def step(handler, event) -> None:  # type: ignore[no-untyped-def]
        async with UnitOfWork(sessions, "order") as uow:
            await handler(uow, event, Envelope.wrap(event, producer="test"))
            await uow.commit()

    try:
        await asyncio.gather(
            *(
                step(handler, event)
                for order_id in orders
                for handler, event in (
                    (
                        on_stock_reserved,
                        StockReserved(
                            order_id=order_id,
                            user_id=user_id,
                            reserved=[
                                ReservedLine(
                                    product_id=7, name="kimchi", quantity=2, unit_price=5_000
                                )
                            ],
                            excluded=[],
                        ),
                    ),
                    (
                        on_order_priced,
                        OrderPriced(
                            order_id=order_id,
                            user_id=user_id,
                            subtotal=10_000,
                            discount=0,
                            total=10_000,
                        ),
                    ),
                    (
                        on_payment_completed,
                        PaymentCompleted(
                            order_id=order_id, user_id=user_id, amount=10_000, balance_after=0
                        ),
                    ),
                )
            )
        )
    finally:
        await engine.dispose()

    for order_id in orders:
        order = (await client.get(f"/orders/{order_id}")).json()
        assert order["status"] == "PAID"
        assert order["lines"][0]["unit_price"] == 5_000
        assert order["total"] == 10_000
