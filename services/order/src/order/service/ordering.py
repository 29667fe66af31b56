"""Use cases behind the HTTP API: place an order (once per Idempotency-Key), read orders, and
wait for the end of an order's saga. Each opens its own unit of work (shopkit.database.uow)."""

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from order.adapters.completions import OrderCompletions
from order.adapters.repository import OrderRepository
from order.domain.order import Order, OrderNotFound
from order.service import metrics
from shopkit.database.uow import UnitOfWorkFactory
from shopkit.http import idempotency
from shopkit.ops.logging import bound, get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class PlaceOrder:
    user_id: int
    items: list[tuple[int, int]]
    """(product id, quantity) in the order the client listed them."""
    user_coupon_id: int | None


@dataclass(frozen=True)
class Placed:
    order: Order
    replayed: bool
    """True when an earlier request with the same Idempotency-Key created the order."""


async def place_order(
    units: UnitOfWorkFactory,
    command: PlaceOrder,
    *,
    saga_timeout: timedelta,
    idempotency_key: str | None = None,
) -> Placed:
    """A new PENDING order and its OrderCreated in the outbox, in one transaction. Under an
    Idempotency-Key, a retry finds the order the first request created (in its current state)."""
    created: list[Order] = []

    async def create() -> tuple[int, dict[str, Any]]:
        order = Order.place(
            order_id=uuid4(),
            user_id=command.user_id,
            items=command.items,
            user_coupon_id=command.user_coupon_id,
            now=datetime.now(UTC),
            timeout=saga_timeout,
        )
        repo.add(order, uow)
        uow.collect(order)
        metrics.order_placed(uow)
        created.append(order)
        return 202, {"order_id": str(order.order_id)}

    async with units() as uow:
        repo = OrderRepository(uow.session)
        if idempotency_key is None:
            await create()
        else:
            outcome = await idempotency.once(
                uow.session,
                scope=f"order:{command.user_id}",
                key=idempotency_key,
                body=dataclasses.asdict(command),
                run=create,
            )
            if outcome.replayed:
                order_id = UUID(outcome.body["order_id"])
                replayed = await repo.get(order_id)
                if replayed is None:  # the key outlived its order: never create a second one
                    raise OrderNotFound(order_id)
                with bound(order_id=str(order_id)):
                    log.info("order_request_replayed")
                return Placed(replayed, replayed=True)
        await uow.commit()
    order = created[0]
    with bound(order_id=str(order.order_id)):
        log.info("order_placed", user_id=order.user_id, lines=len(order.lines))
    return Placed(order, replayed=False)


async def get_order(units: UnitOfWorkFactory, order_id: UUID) -> Order:
    async with units() as uow:
        order = await OrderRepository(await uow.read_only()).get(order_id)
    if order is None:
        raise OrderNotFound(order_id)
    return order


async def orders_of_user(units: UnitOfWorkFactory, user_id: int, limit: int) -> list[Order]:
    async with units() as uow:
        return await OrderRepository(await uow.read_only()).of_user(user_id, limit)


async def wait_until_final(
    units: UnitOfWorkFactory,
    completions: OrderCompletions,
    order_id: UUID,
    wait_s: float,
) -> Order:
    """The order once it is PAID or FAILED, or as it is after `wait_s` seconds.

    No polling: the request sleeps until a NOTIFY for this order (or a listener reconnect)
    wakes it, then reads the order again. It watches *before* each read, so an order ending
    between the read and the sleep still wakes it. No connection is held while it sleeps.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        with completions.watch(order_id) as woken:
            order = await get_order(units, order_id)
            remaining = deadline - loop.time()
            if order.is_final or remaining <= 0:
                return order
            try:
                await asyncio.wait_for(woken, timeout=remaining)
            except TimeoutError:
                pass
