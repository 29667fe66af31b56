"""The repository's trickier statements against the real PostgreSQL."""

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coupon.adapters.repository import CouponRepository, Refusal
from coupon.config import Settings
from coupon.domain.coupons import IssuedCoupon
from shopkit.database.engine import autocommit, create_engine, session_factory


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions that all share one pooled connection."""
    engine = create_engine(settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def test_a_copy_is_counted_and_given_in_one_statement(
    one_connection: async_sessionmaker[AsyncSession],
    new_coupon: Callable[..., Any],
    db: asyncpg.Connection,
) -> None:
    coupon = await new_coupon(total_quantity=2, valid_days=3)
    now = datetime.now(UTC)

    async def take(user_id: int) -> IssuedCoupon | Refusal:
        async with one_connection() as session, session.begin():
            copies = await CouponRepository(session).take_copies(coupon["id"], [(user_id, now)])
            return copies[user_id]

    first = await take(1)
    assert isinstance(first, IssuedCoupon)
    assert (first.user_id, first.issued_at, first.expires_at) == (1, now, now + timedelta(days=3))
    # a second copy for the same user is refused and not counted
    assert await take(1) is Refusal.ALREADY_HELD
    issued = "SELECT issued_quantity FROM coupons WHERE id = $1"
    assert await db.fetchval(issued, coupon["id"]) == 1
    assert isinstance(await take(2), IssuedCoupon)
    assert await take(3) is Refusal.SOLD_OUT
    assert await db.fetchval(issued, coupon["id"]) == 2
    copies = "SELECT count(*) FROM user_coupons WHERE coupon_id = $1"
    assert await db.fetchval(copies, coupon["id"]) == 2


async def test_autocommit_does_not_outlive_its_session(
    one_connection: async_sessionmaker[AsyncSession],
) -> None:
    """A one-statement use case's autocommit (shopkit.database.engine.autocommit) must not leak into the
    next user of the pooled connection (a saga step, say), which relies on its transaction
    rolling back as a whole."""
    async with one_connection() as session:
        await (await autocommit(session)).execute(text("SELECT 1"))

    async def create_then_fail() -> None:
        async with one_connection() as session, session.begin():
            await session.execute(text("CREATE TABLE leak_probe (x int)"))
            raise RuntimeError("roll it all back")

    with pytest.raises(RuntimeError):
        await create_then_fail()
    async with one_connection() as session:
        probe = text("SELECT count(*) FROM pg_tables WHERE tablename = 'leak_probe'")
        assert await session.scalar(probe) == 0
