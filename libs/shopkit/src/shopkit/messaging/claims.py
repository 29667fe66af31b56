"""The claim store: a consumer's memory of the events it handled, rows of `processed_events`
(consumer, event_id) in the consumer's own database, one way for every consumer.

A claim is written in the same transaction as the event's effect, so an event is handled once
however often it is delivered: a redelivery after a crash, a copy the outbox published again,
a dead letter replayed days later. The rows are pruned by shopkit.database.retention after
`processed_events_retention_days`, longer than any replay can come (ServiceSettings checks it
against the topics' retention).
"""

from enum import Enum
from uuid import UUID, uuid5

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession

from shopkit.database.engine import Prepared

_CLAIM = Prepared(
    text(
        "INSERT INTO processed_events (consumer, event_id) "
        "SELECT :consumer, unnest(:event_ids) ON CONFLICT DO NOTHING RETURNING event_id"
    ).bindparams(bindparam("event_ids", type_=ARRAY(PgUUID(as_uuid=True))))
)
"""Claims a batch's events in one statement (run by the driver: it begins the batch's
transaction); returns the ids seen for the first time."""


async def claim(session: AsyncSession, consumer: str, event_ids: list[UUID]) -> set[UUID]:
    """Claims `event_ids` for `consumer` in the session's transaction; the ones claimed now
    (the others were handled before)."""
    claimed = await _CLAIM.fetch(session, consumer=consumer, event_ids=event_ids)
    return {row[0] for row in claimed}


class Sighting(Enum):
    FIRST = "first"
    """The event is seen for the first time: count it."""
    SAME_MESSAGE = "same_message"
    """The message the event was first seen in, read again (a replay after a crash): whether
    its effect is already in place is for the consumer's own state to say."""
    COPY = "copy"
    """Another message carrying an event already seen (published again, a replayed dead
    letter): change nothing."""


_POSITIONS = UUID("6f1d3c1e-52b8-4c55-9a55-0f7f3b7c2a10")

_SIGHT = text(
    """
    WITH first AS (
        INSERT INTO processed_events (consumer, event_id) VALUES (:consumer, :event_id)
        ON CONFLICT DO NOTHING RETURNING event_id
    ), here AS (
        INSERT INTO processed_events (consumer, event_id)
        SELECT :positions, :position WHERE EXISTS (SELECT 1 FROM first)
        RETURNING event_id
    )
    SELECT EXISTS (SELECT 1 FROM first) AS first,
           EXISTS (SELECT 1 FROM here)
           OR EXISTS (SELECT 1 FROM processed_events
                      WHERE consumer = :positions AND event_id = :position) AS same
    """
).bindparams(
    bindparam("event_id", type_=PgUUID(as_uuid=True)),
    bindparam("position", type_=PgUUID(as_uuid=True)),
)


async def sight(
    session: AsyncSession, consumer: str, event_id: UUID, topic: str, partition: int, offset: int
) -> Sighting:
    """For a consumer whose effect is not in this database (the ranking's Faust table): claims
    the event and remembers the message it was first seen in, in one statement. A claim written
    before an effect that is then lost in a crash would make the replay skip it; remembering the
    message tells that replay (SAME_MESSAGE, to be decided by the consumer's own high-water
    mark) apart from a copy (COPY)."""
    position = uuid5(_POSITIONS, f"{topic}:{partition}:{offset}")
    row = (
        await session.execute(
            _SIGHT,
            {
                "consumer": consumer,
                "event_id": event_id,
                "positions": f"{consumer}@message",
                "position": position,
            },
        )
    ).one()
    if row.first:
        return Sighting.FIRST
    return Sighting.SAME_MESSAGE if row.same else Sighting.COPY
