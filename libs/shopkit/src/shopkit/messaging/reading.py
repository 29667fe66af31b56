"""Reading a consumed message, one way for every consumer (the engine's saga steps and relay,
the ranking's Faust agent): skip another consumer's event by its header, decode the envelope and
its event, dead-letter what cannot be read (at once: shopkit.messaging.retry.UNREADABLE), and
the span that continues the trace of the transaction that staged the event."""

from collections.abc import Awaitable, Callable, Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shop_contracts import Envelope, Event, UnknownEventType
from shopkit.messaging.deadletter import REPLAYED_FOR
from shopkit.messaging.kafka import EVENT_TYPE_HEADER
from shopkit.ops import tracing
from shopkit.ops.logging import bound

DeadLetter = Callable[[str], Awaitable[None]]
"""Sends the message being read to the dead-letter topic with this error."""


@dataclass(frozen=True)
class Read:
    envelope: Envelope
    event: Event


def wanted(headers: Any, event_types: Collection[str], consumer: str) -> bool:
    """False when the `event_type` header (set by every outbox relay) names an event not in
    `event_types`: most events on a shared topic are another consumer's, and reading their JSON
    would cost more than everything else done with them. False too for a dead letter replayed for
    another consumer (`dlq.replayed-for`): this one handled that message when it first came, or
    dead-lettered it in a letter of its own, so a replay days later changes nothing here however
    long ago the event id was forgotten."""
    event_type = None
    for name, value in headers.items() if isinstance(headers, Mapping) else headers or ():
        if name == EVENT_TYPE_HEADER:
            event_type = value.decode(errors="replace")
        elif name == REPLAYED_FOR and value.decode(errors="replace") != consumer:
            return False
    return event_type is None or event_type in event_types


async def read(value: bytes, event_types: Collection[str], dead_letter: DeadLetter) -> Read | None:
    """The envelope and event of a message whose type is in `event_types`; None for another
    type and for a message that cannot be read (then dead-lettered)."""
    try:
        envelope = Envelope.model_validate_json(value)
    except ValidationError as exc:
        await dead_letter(f"unparseable envelope: {exc}")
        return None
    if envelope.event_type not in event_types:
        return None
    try:
        event = envelope.event()
    except (ValidationError, UnknownEventType) as exc:
        with bound(order_id=str(envelope.order_id), event_id=str(envelope.event_id)):
            await dead_letter(f"invalid {envelope.event_type}: {exc}")
        return None
    return Read(envelope, event)


def span(
    action: str, envelope: Envelope, headers: Any, topic: str, consumer: str
) -> AbstractContextManager[Any]:
    """The span of handling one event: a child of the span that staged it (its headers carry
    the trace), so what the handler emits or sends carries the trace on."""
    return tracing.consumer_span(
        f"{envelope.event_type} {action}",
        headers,
        topic,
        lambda: {
            "messaging.consumer.group.name": consumer,
            "messaging.message.id": str(envelope.event_id),
            "shop.order_id": str(envelope.order_id),
        },
    )
