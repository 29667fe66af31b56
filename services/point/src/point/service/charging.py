"""Use cases behind the HTTP API. Each runs inside the caller's transaction, except a charge
without an Idempotency-Key, which is one statement in its own."""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from point.adapters.repository import PointRepository, charge_alone
from point.adapters.tables import LedgerEntry
from point.domain.ledger import BalanceLimitExceeded
from shopkit.http import idempotency


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


async def charge_once(
    sessions: async_sessionmaker[AsyncSession], user_id: int, amount: int, key: str
) -> idempotency.Outcome:
    """A charge under an Idempotency-Key, in one transaction with the key's record: a retry
    with the same key and amount answers as the first did and charges nothing."""

    async def run() -> tuple[int, dict[str, int]]:
        balance = await charge(session, user_id, amount)
        return 200, {"user_id": user_id, "balance": balance}

    async with sessions() as session, session.begin():
        return await idempotency.once(
            session, scope=f"charge:{user_id}", key=key, body={"amount": amount}, run=run
        )


async def balance_of(session: AsyncSession, user_id: int) -> int:
    return await PointRepository(session).balance(user_id)


async def history_of(session: AsyncSession, user_id: int, limit: int) -> Sequence[LedgerEntry]:
    return await PointRepository(session).history(user_id, limit)
