"""The point service's saga steps: pay a priced order, give the money back if the order fails.

Both run in the consumer's transaction (the handled-event row commits with them). The payment
row keyed by order id makes each happen at most once, in whichever order the two events come:
an order that failed before it was priced gets a CANCELLED row, so a late pay request is refused.
"""

from sqlalchemy.ext.asyncio import AsyncSession

from point.adapters.repository import PointRepository
from point.domain.ledger import EntryType, PaymentStatus
from shop_contracts import (
    Envelope,
    FailureReason,
    OrderFailed,
    OrderPriced,
    PaymentCompleted,
    PaymentFailed,
)
from shopkit.logging import get_logger
from shopkit.outbox import Outbox

log = get_logger(__name__)
outbox = Outbox(producer="point")


async def pay_order(session: AsyncSession, event: OrderPriced, _: Envelope) -> None:
    repo = PointRepository(session)
    if not await repo.claim_payment(event.order_id, event.user_id, event.total, PaymentStatus.PAID):
        log.info("payment_already_decided")
        return
    balance = await repo.debit_if_covered(event.user_id, event.total)
    if balance is None:
        await repo.set_payment_status(event.order_id, PaymentStatus.DECLINED)
        outbox.stage(
            session,
            PaymentFailed(
                order_id=event.order_id,
                user_id=event.user_id,
                amount=event.total,
                reason=FailureReason.INSUFFICIENT_BALANCE,
            ),
        )
        log.info("payment_declined", total=event.total)
        return
    if event.total > 0:
        repo.record(event.user_id, EntryType.PAYMENT, event.total, balance, event.order_id)
    outbox.stage(
        session,
        PaymentCompleted(
            order_id=event.order_id,
            user_id=event.user_id,
            amount=event.total,
            balance_after=balance,
        ),
    )
    log.info("payment_completed", total=event.total, balance_after=balance)


async def refund_order(session: AsyncSession, event: OrderFailed, _: Envelope) -> None:
    repo = PointRepository(session)
    if await repo.claim_payment(event.order_id, event.user_id, 0, PaymentStatus.CANCELLED):
        log.info("order_failed_before_payment")
        return
    payment = await repo.mark_refunded(event.order_id)
    if payment is None:
        return  # declined, cancelled or already refunded: nothing was taken
    if payment.amount > 0:
        balance = await repo.credit(payment.user_id, payment.amount)
        repo.record(payment.user_id, EntryType.REFUND, payment.amount, balance, event.order_id)
    log.info("payment_refunded", amount=payment.amount)
