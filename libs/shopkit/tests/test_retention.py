"""Retention deletes the bookkeeping rows that can no longer matter, in batches, and nothing else:
not a processed event or idempotency key still within its age, never an unsent outbox row."""

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shopkit.database.retention import prune
from shopkit.settings import ServiceSettings


async def _count(sessions: async_sessionmaker[AsyncSession], sql: str) -> int:
    async with sessions() as s:
        return int((await s.execute(text(sql))).scalar_one())


async def test_old_rows_go_recent_and_unsent_ones_stay(
    settings: ServiceSettings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as s, s.begin():
        for age_days in (30, 30, 30, 20, 1):  # with a batch of 2: three rounds for 4 old rows
            await s.execute(
                text(
                    "INSERT INTO processed_events (consumer, event_id, processed_at)"
                    " VALUES ('c', :id, now() - make_interval(days => :age))"
                ),
                {"id": uuid.uuid4(), "age": age_days},
            )
            await s.execute(
                text(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response,"
                    " created_at) VALUES ('s', :key, 'h', 200, '{}',"
                    " now() - make_interval(days => :age))"
                ),
                {"key": str(uuid.uuid4()), "age": age_days},
            )
        for age_days, sent in ((30, True), (30, False), (0, True)):
            await s.execute(
                text(
                    "INSERT INTO outbox (event_id, topic, key, event_type, envelope, created_at,"
                    " sent_at) VALUES (:id, 't', 'k', 'E', '{}', now() - make_interval(days => :age),"
                    " CASE WHEN :sent THEN now() - make_interval(days => :age) END)"
                ),
                {"id": uuid.uuid4(), "age": age_days, "sent": sent},
            )

    deleted = await prune(sessions, settings.model_copy(update={"retention_batch": 2}))

    assert deleted == {"processed_events": 4, "idempotency_keys": 4, "outbox": 1}
    assert await _count(sessions, "SELECT count(*) FROM processed_events") == 1
    assert await _count(sessions, "SELECT count(*) FROM idempotency_keys") == 1
    # the unsent row stays however old it is; the recent sent one too
    assert await _count(sessions, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 1
    assert await _count(sessions, "SELECT count(*) FROM outbox") == 2
    assert await prune(sessions, settings) == {
        "processed_events": 0,
        "idempotency_keys": 0,
        "outbox": 0,
    }
