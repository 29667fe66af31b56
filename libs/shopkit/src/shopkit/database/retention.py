"""Retention: the runtime's bookkeeping rows are deleted once they can no longer matter.

- `processed_events`: a consumer's memory of handled events. Kafka redelivers an event only while
  the topic still has it, so rows older than the topics' retention (7 days by default) guard
  nothing; they are kept `processed_events_retention_days` (14).
- `idempotency_keys`: a client retries within minutes or hours, never after
  `idempotency_keys_retention_days` (7).
- `outbox`: rows already published (`sent_at` set) after `outbox_retention_days` (1); an unsent
  row is never deleted.

Deleted in batches, each its own short transaction, so no lock is held long and a replica's
concurrent run only finds less to do.
"""

import asyncio
import random
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shopkit.database.engine import autocommit
from shopkit.ops.logging import get_logger
from shopkit.settings import ServiceSettings

log = get_logger(__name__)


@dataclass(frozen=True)
class Rule:
    table: str
    key: str
    """The primary key's columns, to delete exactly the rows selected."""
    age_column: str
    days_setting: str

    def statement(self) -> str:
        return (
            f"DELETE FROM {self.table} WHERE ({self.key}) IN ("
            f"SELECT {self.key} FROM {self.table} "
            f"WHERE {self.age_column} < now() - make_interval(days => :days) LIMIT :batch)"
        )


RULES = (
    Rule(
        "processed_events", "consumer, event_id", "processed_at", "processed_events_retention_days"
    ),
    Rule("idempotency_keys", "scope, key", "created_at", "idempotency_keys_retention_days"),
    Rule("outbox", "id", "sent_at", "outbox_retention_days"),  # NULL (unsent) is never older
)


async def prune(
    sessions: async_sessionmaker[AsyncSession], settings: ServiceSettings
) -> dict[str, int]:
    """Deletes what every rule allows; rows deleted per table."""
    deleted: dict[str, int] = {}
    for rule in RULES:
        days = getattr(settings, rule.days_setting)
        total = 0
        while True:
            async with sessions() as session:
                await autocommit(session)
                result = await session.execute(
                    text(rule.statement()), {"days": days, "batch": settings.retention_batch}
                )
            count = int(getattr(result, "rowcount", 0) or 0)
            total += count
            if count < settings.retention_batch:
                break
        deleted[rule.table] = total
    return deleted


async def run_retention(
    sessions: async_sessionmaker[AsyncSession], settings: ServiceSettings, stop: asyncio.Event
) -> None:
    """Prunes every `retention_interval_s` (the first time after a random part of it, so that
    replicas started together do not all prune at once)."""
    delay = random.uniform(0.1, 1.0) * min(settings.retention_interval_s, 300.0)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return
        except TimeoutError:
            pass
        try:
            deleted = await prune(sessions, settings)
            if any(deleted.values()):
                log.info("retention_pruned", **deleted)
        except Exception:
            log.warning("retention_failed", exc_info=True)
        delay = settings.retention_interval_s
