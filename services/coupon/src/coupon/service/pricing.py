"""The coupon service's saga steps: price an order whose stock is reserved (applying and taking
its coupon), and give the coupon back when the order fails.

Both run in the consumer's unit of work (the handled-event row commits with them). The
`order_pricings` row keyed by order id makes each happen once, in whichever order the two events
come: an order that failed before it was priced is recorded CLOSED, so a late StockReserved for it
is ignored. Taking a coupon is one conditional UPDATE (`used_order_id IS NULL`), so two orders
naming the same coupon at the same moment cannot both get it.
"""

from datetime import UTC, datetime

from coupon.adapters.repository import CouponRepository
from coupon.domain.coupons import Price, PricingStatus, price, subtotal_of
from shop_contracts import CouponRejected, Envelope, OrderFailed, OrderPriced, StockReserved
from shopkit.database.uow import UnitOfWork
from shopkit.ops.logging import get_logger

log = get_logger(__name__)


async def price_order(uow: UnitOfWork, event: StockReserved, _: Envelope) -> None:
    repo = CouponRepository(uow.session)
    if not await repo.claim_pricing(event.order_id, event.user_id, event.user_coupon_id):
        log.info("pricing_skipped", why="the order was priced or closed before")
        return
    subtotal = subtotal_of((line.quantity, line.unit_price) for line in event.reserved)
    if event.user_coupon_id is None:
        await _priced(uow, repo, event, price(subtotal))
        return
    now = datetime.now(UTC)
    held = await repo.held_coupon(event.user_coupon_id)
    if held is None:
        await _rejected(uow, repo, event, f"user coupon {event.user_coupon_id} does not exist")
        return
    refusal = held.refusal(event.user_id, subtotal, now)
    if refusal is None and not await repo.mark_used(
        held.user_coupon_id, event.user_id, event.order_id, now
    ):
        refusal = f"user coupon {held.user_coupon_id} is already used by another order"
    if refusal is not None:
        await _rejected(uow, repo, event, refusal)
        return
    await _priced(uow, repo, event, price(subtotal, held.terms))


async def _priced(
    uow: UnitOfWork, repo: CouponRepository, event: StockReserved, priced: Price
) -> None:
    await repo.finish_pricing(event.order_id, PricingStatus.PRICED, priced)
    uow.emit(
        OrderPriced(
            order_id=event.order_id,
            user_id=event.user_id,
            user_coupon_id=event.user_coupon_id,
            subtotal=priced.subtotal,
            discount=priced.discount,
            total=priced.total,
        ),
    )
    log.info(
        "order_priced",
        user_coupon_id=event.user_coupon_id,
        subtotal=priced.subtotal,
        discount=priced.discount,
        total=priced.total,
    )


async def _rejected(
    uow: UnitOfWork, repo: CouponRepository, event: StockReserved, why: str
) -> None:
    assert event.user_coupon_id is not None
    await repo.finish_pricing(event.order_id, PricingStatus.REJECTED, detail=why)
    uow.emit(
        CouponRejected(
            order_id=event.order_id,
            user_id=event.user_id,
            user_coupon_id=event.user_coupon_id,
            detail=why,
        ),
    )
    log.info("coupon_rejected", user_coupon_id=event.user_coupon_id, detail=why)


async def restore_coupon(uow: UnitOfWork, event: OrderFailed, _: Envelope) -> None:
    repo = CouponRepository(uow.session)
    await repo.close_pricing(event.order_id, event.user_id)
    # Whatever coupon this order holds (the event's user_coupon_id or not): the conditional
    # release on `used_order_id = order_id` gives it back once and never touches another order's.
    released = await repo.release_coupon_of(event.order_id)
    if released is not None:
        log.info("coupon_restored", user_coupon_id=released)
