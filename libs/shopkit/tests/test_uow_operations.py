"""The unit of work's cheap cases (shopkit.database.uow): one statement alone and autocommit
reads cost one statement each, never a BEGIN or a COMMIT, and `alone()` opens no session; a
unit of work that does not commit leaves nothing behind."""

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shopkit.database.engine import Prepared
from shopkit.database.uow import UnitOfWork

_INSERT = Prepared(text("INSERT INTO effects (amount) VALUES (:amount) RETURNING id"))
_COUNT = text("SELECT count(*) FROM effects")


def _unit(sessions: async_sessionmaker[AsyncSession]) -> UnitOfWork:
    return UnitOfWork(sessions, "test", sessions.kw["bind"])


async def _count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with _unit(sessions) as uow:
        return int(await (await uow.read_only()).scalar(_COUNT) or 0)


async def test_one_statement_alone_commits_without_a_session(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with _unit(sessions) as uow:
        row = await uow.alone(_INSERT, amount=5)
        assert row is not None
        assert uow._session is None  # no session was made for it
    assert await _count(sessions) == 1  # committed when it returned, no commit() needed


async def test_alone_refuses_to_follow_other_work(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with _unit(sessions) as uow:
        await uow.session.execute(text("SELECT 1"))
        with pytest.raises(RuntimeError):
            await uow.alone(_INSERT, amount=5)
    assert await _count(sessions) == 0


async def test_read_only_runs_each_statement_in_its_own_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """No BEGIN was sent: two statements see two transactions (one round trip each)."""
    started = text("SELECT transaction_timestamp() FROM pg_sleep(0.01)")
    async with _unit(sessions) as uow:
        session = await uow.read_only()
        first, second = await session.scalar(started), await session.scalar(started)
    assert first != second


async def test_a_unit_that_does_not_commit_leaves_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with _unit(sessions) as uow:
        await uow.session.execute(text("INSERT INTO effects (amount) VALUES (1)"))
    assert await _count(sessions) == 0
