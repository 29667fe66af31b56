"""Use cases behind the HTTP API. Each runs inside the caller's transaction."""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from point.adapters.repository import PointRepository
from point.adapters.tables import LedgerEntry
from point.domain.ledger import BalanceLimitExceeded


async def charge(session: AsyncSession, user_id: int, amount: int) -> int:
    """Adds points and writes the ledger entry (one statement: alone, it is its own
    transaction); the new balance. Raises BalanceLimitExceeded and changes nothing."""
    balance = await PointRepository(session).charge(user_id, amount)
    if balance is None:
        raise BalanceLimitExceeded()
    return balance


async def balance_of(session: AsyncSession, user_id: int) -> int:
    return await PointRepository(session).balance(user_id)


async def history_of(session: AsyncSession, user_id: int, limit: int) -> Sequence[LedgerEntry]:
    return await PointRepository(session).history(user_id, limit)
