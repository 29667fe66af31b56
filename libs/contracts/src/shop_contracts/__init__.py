"""Contracts shared by every service: events, envelope, topics, the error model."""

from shop_contracts import topics
from shop_contracts.envelope import Envelope, UnknownEventType
from shop_contracts.errors import PROBLEM_MEDIA_TYPE, ErrorCode, FieldError, Problem
from shop_contracts.events import (
    EVENT_TYPES,
    CouponRejected,
    Event,
    ExcludedLine,
    ExclusionReason,
    FailureReason,
    OrderCreated,
    OrderFailed,
    OrderLine,
    OrderPaid,
    OrderPriced,
    PaidLine,
    PaymentCompleted,
    PaymentFailed,
    ReservedLine,
    StockRejected,
    StockReserved,
)

__all__ = [
    "EVENT_TYPES",
    "PROBLEM_MEDIA_TYPE",
    "CouponRejected",
    "Envelope",
    "ErrorCode",
    "Event",
    "ExcludedLine",
    "ExclusionReason",
    "FailureReason",
    "FieldError",
    "OrderCreated",
    "OrderFailed",
    "OrderLine",
    "OrderPaid",
    "OrderPriced",
    "PaidLine",
    "PaymentCompleted",
    "PaymentFailed",
    "Problem",
    "ReservedLine",
    "StockRejected",
    "StockReserved",
    "UnknownEventType",
    "topics",
]
