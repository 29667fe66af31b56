"""All of the point service's SQL. Every balance change is one conditional statement."""

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from point.adapters.tables import Balance, LedgerEntry, Payment
from point.domain.ledger import MAX_BALANCE, EntryType, PaymentStatus


class PointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def balance(self, user_id: int) -> int:
        value = await self.session.scalar(select(Balance.balance).where(Balance.user_id == user_id))
        return value or 0

    async def credit_within_cap(self, user_id: int, amount: int) -> int | None:
        """Adds `amount` unless the balance would pass the cap; the new balance or None."""
        stmt = (
            insert(Balance)
            .values(user_id=user_id, balance=amount)
            .on_conflict_do_update(
                index_elements=[Balance.user_id],
                set_={"balance": Balance.balance + amount},
                where=Balance.balance + amount <= MAX_BALANCE,
            )
            .returning(Balance.balance)
        )
        return await self.session.scalar(stmt)

    async def credit(self, user_id: int, amount: int) -> int:
        """Adds `amount` unconditionally (refunds must always go through)."""
        stmt = (
            insert(Balance)
            .values(user_id=user_id, balance=amount)
            .on_conflict_do_update(
                index_elements=[Balance.user_id], set_={"balance": Balance.balance + amount}
            )
            .returning(Balance.balance)
        )
        balance = await self.session.scalar(stmt)
        assert balance is not None
        return balance

    async def debit_if_covered(self, user_id: int, amount: int) -> int | None:
        """Takes `amount` if the balance covers it; the new balance or None."""
        if amount == 0:  # nothing owed (e.g. a 100% coupon): even a user never charged can pay
            return await self.balance(user_id)
        stmt = (
            update(Balance)
            .where(Balance.user_id == user_id, Balance.balance >= amount)
            .values(balance=Balance.balance - amount)
            .returning(Balance.balance)
        )
        return await self.session.scalar(stmt)

    def record(
        self,
        user_id: int,
        type_: EntryType,
        amount: int,
        balance_after: int,
        order_id: UUID | None = None,
    ) -> None:
        self.session.add(
            LedgerEntry(
                user_id=user_id,
                type=type_.value,
                amount=amount,
                balance_after=balance_after,
                order_id=order_id,
            )
        )

    async def history(self, user_id: int, limit: int) -> Sequence[LedgerEntry]:
        stmt = (
            select(LedgerEntry)
            .where(LedgerEntry.user_id == user_id)
            .order_by(LedgerEntry.id.desc())
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def claim_payment(
        self, order_id: UUID, user_id: int, amount: int, status: PaymentStatus
    ) -> bool:
        """Creates the order's payment row; False when the order already has one."""
        stmt = (
            insert(Payment)
            .values(order_id=order_id, user_id=user_id, amount=amount, status=status.value)
            .on_conflict_do_nothing(index_elements=[Payment.order_id])
            .returning(Payment.order_id)
        )
        return await self.session.scalar(stmt) is not None

    async def set_payment_status(self, order_id: UUID, status: PaymentStatus) -> None:
        await self.session.execute(
            update(Payment).where(Payment.order_id == order_id).values(status=status.value)
        )

    async def mark_refunded(self, order_id: UUID) -> Payment | None:
        """PAID → REFUNDED, once; the payment if this call did it."""
        stmt = (
            update(Payment)
            .where(Payment.order_id == order_id, Payment.status == PaymentStatus.PAID.value)
            .values(status=PaymentStatus.REFUNDED.value)
            .returning(Payment)
        )
        return await self.session.scalar(stmt)
