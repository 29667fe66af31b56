"""The problem+json error model of API.md (RFC 9457) and every error code the APIs use."""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

PROBLEM_MEDIA_TYPE = "application/problem+json"


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    """The path exists, not with this method (405, with `Allow` naming the methods it has)."""
    INTERNAL_ERROR = "INTERNAL_ERROR"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    IDEMPOTENCY_KEY_IN_USE = "IDEMPOTENCY_KEY_IN_USE"
    BALANCE_LIMIT_EXCEEDED = "BALANCE_LIMIT_EXCEEDED"
    PRODUCT_NOT_FOUND = "PRODUCT_NOT_FOUND"
    COUPON_NOT_FOUND = "COUPON_NOT_FOUND"
    COUPON_SOLD_OUT = "COUPON_SOLD_OUT"
    COUPON_ALREADY_ISSUED = "COUPON_ALREADY_ISSUED"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    """Answered by the gateway (429) when a client exceeds its rate on a limited path."""
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    """Answered by the gateway (413) for bodies over its limit."""


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: ErrorCode
    errors: list[FieldError] | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
