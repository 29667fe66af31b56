"""The envelope every Kafka message carries: the value is the envelope as JSON, the key the order id."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from shop_contracts.events import EVENT_TYPES, Event


class UnknownEventType(ValueError):
    pass


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID = Field(description="Unique per event; consumers dedupe on it.")
    event_type: str = Field(description="Name of the payload model, e.g. OrderCreated.")
    version: int = Field(ge=1, description="Schema version of the payload.")
    occurred_at: datetime = Field(description="When the fact happened (tz-aware).")
    order_id: UUID = Field(description="Correlation id: the saga's order id; also the Kafka key.")
    producer: str = Field(description="The service that emitted the event.")
    payload: dict[str, Any]

    @classmethod
    def wrap(
        cls, event: Event, *, producer: str, occurred_at: datetime | None = None
    ) -> "Envelope":
        return cls(
            event_id=uuid4(),
            event_type=type(event).__name__,
            version=type(event).version,
            occurred_at=occurred_at or datetime.now(UTC),
            order_id=event.order_id,
            producer=producer,
            payload=event.model_dump(mode="json"),
        )

    @property
    def key(self) -> bytes:
        return str(self.order_id).encode()

    def event(self) -> Event:
        """The typed payload; raises UnknownEventType or pydantic.ValidationError."""
        try:
            model = EVENT_TYPES[self.event_type]
        except KeyError as exc:
            raise UnknownEventType(self.event_type) from exc
        return model.model_validate(self.payload)
