"""The order service's saga steps: each records one fact from another service on the order.

They run in the consumer's unit of work (the handled-event row commits with them), lock the
order row first, and change the order only through its domain methods; the unit of work stages
the events those record (OrderPaid / OrderFailed); an order that ends wakes the API processes
waiting on it (a NOTIFY from the orders table's trigger). The events come on three topics, so one order's facts may arrive in any order: the
aggregate waits for the last one it needs (see domain/order.py). A fact about an order that has
already ended changes nothing and is only logged.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from order.adapters.repository import OrderRepository
from order.domain.order import Effect, Order
from order.service import metrics
from shop_contracts import (
    CouponRejected,
    Envelope,
    OrderPriced,
    PaymentCompleted,
    PaymentFailed,
    StockRejected,
    StockReserved,
)
from shopkit.database.uow import UnitOfWork
from shopkit.ops.logging import get_logger

log = get_logger(__name__)


async def record_step(
    uow: UnitOfWork, order_id: UUID, fact: str, step: Callable[[Order, datetime], Effect]
) -> Effect | None:
    """Lock the order, apply `step`, save; None when the order is unknown here."""
    repo = OrderRepository(uow.session)
    order = await repo.get_for_update(order_id)
    if order is None:
        log.warning("saga_event_for_unknown_order", fact=fact)
        return None
    was_final = order.is_final
    effect = step(order, datetime.now(UTC))
    if effect is not Effect.APPLIED:
        log.info("saga_event_ignored", fact=fact, effect=effect.value, status=order.status.value)
        return effect
    await repo.save(order)
    uow.collect(order)
    if order.is_final and not was_final:
        metrics.order_ended(uow, order)
        log.info(
            "order_ended",
            fact=fact,
            status=order.status.value,
            reason=order.failure_reason.value if order.failure_reason else None,
            total=order.total,
        )
    else:
        log.info("saga_fact_recorded", fact=fact)
    return effect


async def on_stock_reserved(uow: UnitOfWork, event: StockReserved, _: Envelope) -> None:
    await record_step(
        uow,
        event.order_id,
        "stock_reserved",
        lambda order, now: order.record_reservation(event.reserved, event.excluded, now),
    )


async def on_stock_rejected(uow: UnitOfWork, event: StockRejected, _: Envelope) -> None:
    await record_step(
        uow,
        event.order_id,
        "stock_rejected",
        lambda order, now: order.reject_stock(event.excluded, now),
    )


async def on_order_priced(uow: UnitOfWork, event: OrderPriced, _: Envelope) -> None:
    await record_step(
        uow,
        event.order_id,
        "order_priced",
        lambda order, now: order.record_pricing(event.subtotal, event.discount, event.total, now),
    )


async def on_coupon_rejected(uow: UnitOfWork, event: CouponRejected, _: Envelope) -> None:
    await record_step(
        uow, event.order_id, "coupon_rejected", lambda order, now: order.reject_coupon(now)
    )


async def on_payment_completed(uow: UnitOfWork, event: PaymentCompleted, _: Envelope) -> None:
    await record_step(
        uow,
        event.order_id,
        "payment_completed",
        lambda order, now: order.record_payment(event.amount, now),
    )


async def on_payment_failed(uow: UnitOfWork, event: PaymentFailed, _: Envelope) -> None:
    await record_step(
        uow, event.order_id, "payment_failed", lambda order, now: order.decline_payment(now)
    )
