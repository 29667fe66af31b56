"""The claim store: a consumer's memory of the events it handled, rows of `processed_events`
(consumer, event_id) in the consumer's own database (the saga steps on the consumer engine).
Where the effect is not in that database the same memory lives beside the effect instead: the
relay's relay_deliveries (its effect is an HTTP call, which no transaction can hold through an
outage) and the ranking's event-id table (its effect is a Faust table).

A claim is written in the same transaction as the event's effect, so an event is handled once
however often it is delivered: a redelivery after a crash, a copy the outbox published again,
a dead letter replayed days later. The rows are pruned by shopkit.database.retention after
`processed_events_retention_days`, longer than any replay can come (ServiceSettings checks it
against the topics' retention).
"""

from uuid import UUID

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
