"""Use cases behind the HTTP API, one unit of work each (shopkit.database.uow): a charge without
an Idempotency-Key is one statement alone; reads commit nothing."""

from point.adapters.repository import PointRepository, charge_alone
from point.domain.ledger import BalanceLimitExceeded, Entry
from shopkit.database.uow import UnitOfWorkFactory
from shopkit.http import idempotency


async def charge_now(units: UnitOfWorkFactory, user_id: int, amount: int) -> int:
    """A charge on its own (no Idempotency-Key): one statement, its own transaction; the new
    balance. Raises BalanceLimitExceeded and changes nothing."""
    async with units() as uow:
        balance = await charge_alone(uow, user_id, amount)
    if balance is None:
        raise BalanceLimitExceeded()
    return balance


async def charge_once(
    units: UnitOfWorkFactory, user_id: int, amount: int, key: str
) -> idempotency.Outcome:
    """A charge under an Idempotency-Key, in one transaction with the key's record: a retry
    with the same key and amount answers as the first did and charges nothing."""
    async with units() as uow:

        async def run() -> tuple[int, dict[str, int]]:
            balance = await PointRepository(uow.session).charge(user_id, amount)
            if balance is None:
                raise BalanceLimitExceeded()
            return 200, {"user_id": user_id, "balance": balance}

        outcome = await idempotency.once(
            uow.session, scope=f"charge:{user_id}", key=key, body={"amount": amount}, run=run
        )
        await uow.commit()
    return outcome


async def balance_of(units: UnitOfWorkFactory, user_id: int) -> int:
    async with units() as uow:
        return await PointRepository(await uow.read_only()).balance(user_id)


async def history_of(units: UnitOfWorkFactory, user_id: int, limit: int) -> list[Entry]:
    async with units() as uow:
        return await PointRepository(await uow.read_only()).history(user_id, limit)
