"""Use cases behind the HTTP API. Each runs inside the caller's transaction, except a charge
without an Idempotency-Key, which is one statement in its own."""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from point.adapters.repository import PointRepository, charge_alone
from point.adapters.tables import LedgerEntry
from point.domain.ledger import BalanceLimitExceeded


async def charge_now(engine: AsyncEngine, user_id: int, amount: int) -> int:
    """A charge on its own (no Idempotency-Key): one statement, its own transaction; the new
    balance. Raises BalanceLimitExceeded and changes nothing."""
    balance = await charge_alone(engine, user_id, amount)
    if balance is None:
        raise BalanceLimitExceeded()
    return balance


async def charge(session: AsyncSession, user_id: int, amount: int) -> int:
    """A charge inside the session's transaction (with its Idempotency-Key's record); the new
    balance. Raises BalanceLimitExceeded and changes nothing."""
    balance = await PointRepository(session).charge(user_id, amount)
    if balance is None:
        raise BalanceLimitExceeded()
    return balance


async def balance_of(session: AsyncSession, user_id: int) -> int:
    return await PointRepository(session).balance(user_id)


async def history_of(session: AsyncSession, user_id: int, limit: int) -> Sequence[LedgerEntry]:
    return await PointRepository(session).history(user_id, limit)
