"""The point service's saga steps: pay a priced order, give the money back if the order fails.

Both run in the consumer's unit of work (the handled-event row commits with them). The payment
row keyed by order id makes each happen at most once, in whichever order the two events come:
an order that failed before it was priced gets a CANCELLED row, so a late pay request is refused.
"""

from point.adapters.repository import PointRepository
from point.domain.ledger import PaymentStatus
from shop_contracts import (
    Envelope,
    FailureReason,
    OrderFailed,
    OrderPriced,
    PaymentCompleted,
    PaymentFailed,
)
from shopkit.database.uow import UnitOfWork
from shopkit.ops.logging import get_logger

log = get_logger(__name__)


async def pay_order(uow: UnitOfWork, event: OrderPriced, _: Envelope) -> None:
    repo = PointRepository(uow.session)
    if not await repo.claim_payment(event.order_id, event.user_id, event.total, PaymentStatus.PAID):
        log.info("payment_already_decided")
        return
    balance = await repo.pay(event.user_id, event.total, event.order_id)
    if balance is None:
        await repo.set_payment_status(event.order_id, PaymentStatus.DECLINED)
        uow.emit(
            PaymentFailed(
                order_id=event.order_id,
                user_id=event.user_id,
                amount=event.total,
                reason=FailureReason.INSUFFICIENT_BALANCE,
            ),
        )
        log.info("payment_declined", total=event.total)
        return
    uow.emit(
        PaymentCompleted(
            order_id=event.order_id,
            user_id=event.user_id,
            amount=event.total,
            balance_after=balance,
        ),
    )
    log.info("payment_completed", total=event.total, balance_after=balance)


async def refund_order(uow: UnitOfWork, event: OrderFailed, _: Envelope) -> None:
    repo = PointRepository(uow.session)
    if await repo.claim_payment(event.order_id, event.user_id, 0, PaymentStatus.CANCELLED):
        log.info("order_failed_before_payment")
        return
    payment = await repo.mark_refunded(event.order_id)
    if payment is None:
        return  # declined, cancelled or already refunded: nothing was taken
    if payment.amount > 0:
        await repo.refund(payment.user_id, payment.amount, event.order_id)
    log.info("payment_refunded", amount=payment.amount)
