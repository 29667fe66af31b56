"""Contracts shared by every service: events, envelope, topics, the error model. The events are
re-exported as `shop_contracts.events` lists them in its `__all__`."""

from shop_contracts import events, topics
from shop_contracts.envelope import Envelope, UnknownEventType
from shop_contracts.errors import PROBLEM_MEDIA_TYPE, ErrorCode, FieldError, Problem
from shop_contracts.events import *  # noqa: F403

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "Envelope",
    "ErrorCode",
    "FieldError",
    "Problem",
    "UnknownEventType",
    "topics",
]
__all__ += events.__all__
