"""The product service's saga steps: reserve an order's stock, give it back if the order fails.

Both run in the consumer's unit of work (the handled-event row commits with them). The order's
reservation row, keyed by order id, makes each happen at most once whatever the delivery: a
second `OrderCreated` for the same order (another event id) finds the row and does nothing, and
an order that failed before it was ever reserved gets a RELEASED row, so a late `OrderCreated`
takes nothing.
"""

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from product.adapters.repository import ProductRepository, Released, Taken
from product.domain.reservation import Reservation, ReservationStatus, lines_in_lock_order
from shop_contracts import (
    Envelope,
    ExclusionReason,
    OrderCreated,
    OrderFailed,
    ReservedLine,
    StockRejected,
    StockReserved,
)
from shopkit.database.uow import UnitOfWork
from shopkit.ops.logging import get_logger

log = get_logger(__name__)


class StockStore(Protocol):
    """What the saga steps need from storage (ProductRepository; a fake in unit tests)."""

    async def exists(self, product_id: int) -> bool: ...
    async def take_stock(self, product_id: int, quantity: int) -> Taken | None: ...
    async def give_back(self, product_id: int, quantity: int) -> None: ...
    async def claim_order(
        self, order_id: UUID, user_id: int, status: ReservationStatus
    ) -> bool: ...
    async def set_order_status(self, order_id: UUID, status: ReservationStatus) -> None: ...
    async def record_lines(self, order_id: UUID, lines: Sequence[ReservedLine]) -> None: ...
    async def mark_released(self, order_id: UUID) -> bool: ...
    async def release_lines(self, order_id: UUID) -> list[Released]: ...


async def reserve(store: StockStore, order: OrderCreated) -> StockReserved | StockRejected | None:
    """Takes what can be taken of the order's lines; the event to emit, or None when this order
    was already handled (reserved, rejected or released) and nothing may change."""
    if not await store.claim_order(order.order_id, order.user_id, ReservationStatus.RESERVED):
        return None
    reservation = Reservation.of(order)
    for line in lines_in_lock_order(order.lines):
        # A quantity is at most shop_contracts.MAX_QUANTITY (a larger one is refused when the
        # event is read): it can always be asked of the database.
        taken = await store.take_stock(line.product_id, line.quantity)
        if taken is not None:
            reservation.take(line, name=taken.name, unit_price=taken.unit_price)
        elif await store.exists(line.product_id):
            reservation.exclude(line, ExclusionReason.OUT_OF_STOCK)
        else:
            reservation.exclude(line, ExclusionReason.PRODUCT_NOT_FOUND)
    await store.record_lines(order.order_id, reservation.reserved)
    if reservation.status is not ReservationStatus.RESERVED:
        await store.set_order_status(order.order_id, reservation.status)
    return reservation.outcome()


async def release(store: StockStore, order: OrderFailed) -> list[Released]:
    """Gives back exactly what the order holds, once; what was given back."""
    if await store.claim_order(order.order_id, order.user_id, ReservationStatus.RELEASED):
        return []  # never reserved: the RELEASED row now keeps a late OrderCreated out
    if not await store.mark_released(order.order_id):
        return []  # rejected (nothing taken) or already released
    released = await store.release_lines(order.order_id)
    for line in released:
        await store.give_back(line.product_id, line.quantity)
    return released


async def reserve_stock(uow: UnitOfWork, event: OrderCreated, _: Envelope) -> None:
    outcome = await reserve(ProductRepository(uow.session), event)
    if outcome is None:
        log.info("reservation_already_decided")
        return
    uow.emit(outcome)
    if isinstance(outcome, StockReserved):
        log.info("stock_reserved", reserved=len(outcome.reserved), excluded=len(outcome.excluded))
    else:
        log.info("stock_rejected", excluded=len(outcome.excluded))


async def release_stock(uow: UnitOfWork, event: OrderFailed, _: Envelope) -> None:
    released = await release(ProductRepository(uow.session), event)
    if not released:
        log.info("release_found_nothing_held")
        return
    log.info("stock_released", lines=len(released), units=sum(r.quantity for r in released))
