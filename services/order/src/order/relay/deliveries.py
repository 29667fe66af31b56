"""What the relay remembers: one row per event it finished (delivered or dead-lettered).

The table lives in a database the relay is configured with (the order DB by default) but
belongs to the relay alone, hence its own metadata and the `relay_` prefix. shopkit's
migrations cannot take a separate Alembic version table, so the table is created at
start-up (idempotent, under an advisory lock so replicas starting together do it once).
"""

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
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shopkit.db import NAMING_CONVENTION, autocommit

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


_DELIVERED = select(relay_deliveries.c.event_id).where(
    relay_deliveries.c.event_id == bindparam("event_id"),
    relay_deliveries.c.status == Outcome.DELIVERED.value,
)
_upsert = insert(relay_deliveries)
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


class Deliveries:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def delivered(self, event_id: UUID) -> bool:
        async with self.sessions() as session:
            found = await (await autocommit(session)).scalar(_DELIVERED, {"event_id": event_id})
        return found is not None

    async def record(
        self,
        event_id: UUID,
        order_id: UUID,
        outcome: Outcome,
        attempts: int,
        last_error: str | None = None,
    ) -> None:
        """Upsert; a DELIVERED row is final (a later dead-letter of a replay never hides it).
        One statement, its own transaction (one round trip)."""
        async with self.sessions() as session:
            await (await autocommit(session)).execute(
                _RECORD,
                {
                    "event_id": event_id,
                    "order_id": order_id,
                    "status": outcome.value,
                    "attempts": attempts,
                    "last_error": last_error,
                },
            )

    async def prune(self, older_than: timedelta) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                delete(relay_deliveries).where(
                    relay_deliveries.c.finished_at < datetime.now(UTC) - older_than
                )
            )
