"""The saga's events. Frozen, `extra="forbid"`, one model per event type.

The chain (see the README's sequence diagram and asyncapi.json):

    order   --OrderCreated-->     product --StockReserved | StockRejected--> coupon, order
    coupon  --OrderPriced | CouponRejected-->  point, order
    point   --PaymentCompleted | PaymentFailed--> order
    order   --OrderPaid | OrderFailed-->  ranking, data-platform relay | product, coupon, point
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shop_contracts import topics

__all__ = [
    "EVENT_TYPES",
    "INT64_MAX",
    "MAX_QUANTITY",
    "CouponRejected",
    "Event",
    "ExcludedLine",
    "ExclusionReason",
    "FailureReason",
    "OrderCreated",
    "OrderFailed",
    "OrderLine",
    "OrderPaid",
    "OrderPriced",
    "PaidLine",
    "PaymentCompleted",
    "PaymentFailed",
    "ReservedLine",
    "StockRejected",
    "StockReserved",
]

INT64_MAX: Final = 2**63 - 1
"""The largest id or amount: every id and amount column is a PostgreSQL bigint (int64). A larger
one in an event would fail in the database (asyncpg: "value out of int64 range"): refused when
the event is read instead, as the HTTP API refuses it."""
MAX_QUANTITY: Final = 1_000
"""Units of one product on one order line: the order API's bound (an order names each product
once, so a reservation's and a payment's lines are within it too)."""

Id = Annotated[int, Field(ge=1, le=INT64_MAX)]
Won = Annotated[int, Field(ge=0, le=INT64_MAX)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]


class ExclusionReason(StrEnum):
    OUT_OF_STOCK = "OUT_OF_STOCK"
    PRODUCT_NOT_FOUND = "PRODUCT_NOT_FOUND"


class FailureReason(StrEnum):
    OUT_OF_STOCK = "OUT_OF_STOCK"
    COUPON_INVALID = "COUPON_INVALID"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    TIMEOUT = "TIMEOUT"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(_Model):
    """Base of every event payload: each subclass names its topic and schema version."""

    topic: ClassVar[str]
    version: ClassVar[int] = 1

    order_id: UUID


class OrderLine(_Model):
    product_id: Id
    quantity: Quantity


class ReservedLine(_Model):
    product_id: Id
    name: str
    quantity: Quantity
    unit_price: Won


class ExcludedLine(_Model):
    product_id: Id
    quantity: Quantity
    reason: ExclusionReason


class OrderCreated(Event):
    topic = topics.ORDER_EVENTS
    user_id: Id
    lines: list[OrderLine]
    user_coupon_id: Id | None = None


class StockReserved(Event):
    """Some lines were reserved; `excluded` lists the others (never fatal on its own)."""

    topic = topics.STOCK_EVENTS
    user_id: Id
    user_coupon_id: Id | None = None
    reserved: list[ReservedLine]
    excluded: list[ExcludedLine]


class StockRejected(Event):
    """No line could be reserved: the order fails with OUT_OF_STOCK."""

    topic = topics.STOCK_EVENTS
    user_id: Id
    excluded: list[ExcludedLine]


class OrderPriced(Event):
    """The reserved lines priced, the coupon (if any) applied and marked used for this order."""

    topic = topics.COUPON_EVENTS
    user_id: Id
    user_coupon_id: Id | None = None
    subtotal: Won
    discount: Won
    total: Won


class CouponRejected(Event):
    topic = topics.COUPON_EVENTS
    user_id: Id
    user_coupon_id: Id
    reason: FailureReason = FailureReason.COUPON_INVALID
    detail: str


class PaymentCompleted(Event):
    topic = topics.PAYMENT_EVENTS
    user_id: Id
    amount: Won
    balance_after: Won


class PaymentFailed(Event):
    topic = topics.PAYMENT_EVENTS
    user_id: Id
    amount: Won
    reason: FailureReason = FailureReason.INSUFFICIENT_BALANCE


class PaidLine(_Model):
    product_id: Id
    name: str
    quantity: Quantity
    unit_price: Won


class OrderPaid(Event):
    """Terminal: the order is paid. Feeds the data platform and the ranking."""

    topic = topics.ORDER_EVENTS
    user_id: Id
    lines: list[PaidLine]
    user_coupon_id: Id | None = None
    subtotal: Won
    discount: Won
    total: Won
    paid_at: datetime


class OrderFailed(Event):
    """Terminal: the order failed. Every service gives back what it took for it, once."""

    topic = topics.ORDER_EVENTS
    user_id: Id
    reason: FailureReason
    user_coupon_id: Id | None = None


EVENT_TYPES: Final[dict[str, type[Event]]] = {
    cls.__name__: cls
    for cls in (
        OrderCreated,
        StockReserved,
        StockRejected,
        OrderPriced,
        CouponRejected,
        PaymentCompleted,
        PaymentFailed,
        OrderPaid,
        OrderFailed,
    )
}
