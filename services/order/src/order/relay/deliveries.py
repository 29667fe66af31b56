"""What the relay remembers: one row per event it finished (delivered or dead-lettered).

The table lives in a database the relay is configured with (the order DB by default) but
belongs to the relay alone, hence its own metadata and the `relay_` prefix. shopkit's
migrations cannot take a separate Alembic version table, so the table is created at
start-up (idempotent, under an advisory lock so replicas starting together do it once).
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shopkit.database.engine import NAMING_CONVENTION, Prepared, autocommit

_SCHEMA_LOCK = 7_202_611_260

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Outcome(StrEnum):
    DELIVERED = "DELIVERED"
    DEAD_LETTERED = "DEAD_LETTERED"


relay_deliveries = Table(
    "relay_deliveries",
    metadata,
    Column("event_id", PgUUID(as_uuid=True), primary_key=True),
    Column("order_id", PgUUID(as_uuid=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("finished_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('DELIVERED', 'DEAD_LETTERED')", name="status_known"),
)


async def ensure_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
        await conn.run_sync(metadata.create_all)


_upsert = insert(relay_deliveries).values(
    {c: bindparam(c) for c in ("event_id", "order_id", "status", "attempts", "last_error")}
)
_RECORD = _upsert.on_conflict_do_update(
    index_elements=[relay_deliveries.c.event_id],
    set_={
        "status": _upsert.excluded.status,
        "attempts": _upsert.excluded.attempts,
        "last_error": _upsert.excluded.last_error,
        "finished_at": func.now(),
    },
    where=relay_deliveries.c.status != Outcome.DELIVERED.value,
)
_RECORD_ALL = Prepared(_RECORD)
"""Run by the driver (shopkit.database.engine.Prepared), as _DELIVERED_AMONG: once per partition batch."""


@dataclass(frozen=True)
class Finished:
    """How one event's delivery ended, to be recorded."""

    event_id: UUID
    order_id: UUID
    outcome: Outcome
    attempts: int
    last_error: str | None = None


_DELIVERED_AMONG = Prepared(
    select(relay_deliveries.c.event_id).where(
        relay_deliveries.c.event_id == func.any(bindparam("event_ids", type_=ARRAY(PgUUID()))),
        relay_deliveries.c.status == Outcome.DELIVERED.value,
    )
)


class Deliveries:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def delivered_among(self, event_ids: list[UUID]) -> set[UUID]:
        """Which of `event_ids` were delivered before (one statement)."""
        if not event_ids:
            return set()
        async with self.sessions() as session:
            found = await _DELIVERED_AMONG.fetch(await autocommit(session), event_ids=event_ids)
            return {row[0] for row in found}

    async def record_all(self, finished: list[Finished]) -> None:
        """Records how each event ended, in one statement. Upserts: a DELIVERED row is final
        (a later dead-letter of a replay never hides it)."""
        if not finished:
            return
        async with self.sessions() as session:
            await _RECORD_ALL.executemany(
                await autocommit(session),
                [
                    {
                        "event_id": f.event_id,
                        "order_id": f.order_id,
                        "status": f.outcome.value,
                        "attempts": f.attempts,
                        "last_error": f.last_error,
                    }
                    for f in finished
                ],
            )

    async def prune(self, older_than: timedelta) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                delete(relay_deliveries).where(
                    relay_deliveries.c.finished_at < datetime.now(UTC) - older_than
                )
            )
