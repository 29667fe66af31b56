"""All of the point service's SQL. Every balance change is one conditional statement."""

from typing import cast
from uuid import UUID

from sqlalchemy import Table, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from point.adapters.tables import Balance, LedgerEntry, Payment
from point.domain.ledger import MAX_BALANCE, Entry, EntryType, PaymentStatus, Refund
from shopkit.database.engine import Prepared
from shopkit.database.uow import UnitOfWork

_CREDIT = Prepared(
    text(
        """
WITH credited AS (
    INSERT INTO balances AS b (user_id, balance) VALUES (:user_id, :amount)
    ON CONFLICT (user_id) DO UPDATE SET balance = b.balance + :amount, updated_at = now()
    WHERE CAST(:cap AS bigint) IS NULL OR b.balance + :amount <= :cap
    RETURNING balance
), entry AS (
    INSERT INTO ledger (user_id, type, amount, balance_after, order_id)
    SELECT :user_id, :type, :amount, balance, CAST(:order_id AS uuid) FROM credited
)
SELECT balance FROM credited
"""
    ).bindparams(bindparam("order_id", value=None))
)
"""A credit and its ledger entry; with :cap, refused (no row) past the cap (run by the
driver, shopkit.database.engine.Prepared)."""

_DEBIT = Prepared(
    text(
        """
WITH debited AS (
    UPDATE balances SET balance = balance - :amount, updated_at = now()
    WHERE user_id = :user_id AND balance >= :amount
    RETURNING balance
), entry AS (
    INSERT INTO ledger (user_id, type, amount, balance_after, order_id)
    SELECT :user_id, 'PAYMENT', :amount, balance, :order_id FROM debited
)
SELECT balance FROM debited
"""
    )
)
"""A payment and its ledger entry; no row when the balance does not cover it (a saga step's
statement: run by the driver, shopkit.database.engine.Prepared)."""


_payments = cast(Table, Payment.__table__)
_CLAIM_PAYMENT = Prepared(
    insert(_payments)
    .values(
        order_id=bindparam("order_id"),
        user_id=bindparam("user_id"),
        amount=bindparam("amount"),
        status=bindparam("status"),
    )
    .on_conflict_do_nothing(index_elements=[_payments.c.order_id])
    .returning(_payments.c.order_id)
)


def _charge(user_id: int, amount: int) -> dict[str, object]:
    return {"user_id": user_id, "amount": amount, "cap": MAX_BALANCE, "type": "CHARGE"}


async def charge_alone(uow: UnitOfWork, user_id: int, amount: int) -> int | None:
    """Adds `amount` unless the balance would pass the cap, and writes its ledger entry: the
    new balance, or None (nothing changed). The unit of work's one statement (`uow.alone`): the
    balance's row lock is held for the database's own time only, never a network round trip."""
    row = await uow.alone(_CREDIT, **_charge(user_id, amount))
    return None if row is None else int(row["balance"])


class PointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def balance(self, user_id: int) -> int:
        value = await self.session.scalar(select(Balance.balance).where(Balance.user_id == user_id))
        return value or 0

    async def charge(self, user_id: int, amount: int) -> int | None:
        """`charge_alone` inside the session's transaction (a charge with an Idempotency-Key)."""
        row = await _CREDIT.fetchrow(self.session, **_charge(user_id, amount))
        return None if row is None else int(row["balance"])

    async def refund(self, user_id: int, amount: int, order_id: UUID) -> int:
        """Gives `amount` back unconditionally (refunds always go through), with its ledger
        entry, in one statement; the new balance."""
        row = await _CREDIT.fetchrow(
            self.session,
            user_id=user_id,
            amount=amount,
            cap=None,
            type=EntryType.REFUND.value,
            order_id=order_id,
        )
        assert row is not None
        return int(row["balance"])

    async def pay(self, user_id: int, amount: int, order_id: UUID) -> int | None:
        """Takes `amount` if the balance covers it, with its ledger entry, in one statement;
        the new balance or None (nothing changed)."""
        if amount == 0:  # nothing owed (e.g. a 100% coupon): even a user never charged can pay
            return await self.balance(user_id)
        row = await _DEBIT.fetchrow(self.session, user_id=user_id, amount=amount, order_id=order_id)
        return None if row is None else int(row["balance"])

    async def history(self, user_id: int, limit: int) -> list[Entry]:
        """Newest first."""
        stmt = (
            select(
                LedgerEntry.type,
                LedgerEntry.amount,
                LedgerEntry.balance_after,
                LedgerEntry.order_id,
                LedgerEntry.created_at,
            )
            .where(LedgerEntry.user_id == user_id)
            .order_by(LedgerEntry.id.desc())
            .limit(limit)
        )
        return [Entry(*row) for row in (await self.session.execute(stmt)).all()]

    async def claim_payment(
        self, order_id: UUID, user_id: int, amount: int, status: PaymentStatus
    ) -> bool:
        """Creates the order's payment row; False when the order already has one."""
        claimed = await _CLAIM_PAYMENT.fetchrow(
            self.session, order_id=order_id, user_id=user_id, amount=amount, status=status.value
        )
        return claimed is not None

    async def set_payment_status(self, order_id: UUID, status: PaymentStatus) -> None:
        await self.session.execute(
            update(Payment).where(Payment.order_id == order_id).values(status=status.value)
        )

    async def mark_refunded(self, order_id: UUID) -> Refund | None:
        """PAID → REFUNDED, once; what to give back if this call did it."""
        stmt = (
            update(Payment)
            .where(Payment.order_id == order_id, Payment.status == PaymentStatus.PAID.value)
            .values(status=PaymentStatus.REFUNDED.value)
            .returning(Payment.user_id, Payment.amount)
        )
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else Refund(*row)
