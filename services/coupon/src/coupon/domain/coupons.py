"""Coupons take integer won off an order. A coupon has a fixed number of copies; a user holds at
most one copy of each, valid for `valid_days` from its issuance (the database computes the expiry
as it issues the copy, in the same statement). A user coupon pays for at most
one order and comes back when that order fails."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final
from uuid import UUID

MAX_PERCENT: Final = 100
MAX_VALID_DAYS: Final = 36_500
"""A hundred years: far beyond any real coupon, and keeps expiry dates representable."""


class DiscountType(StrEnum):
    FIXED = "FIXED"
    PERCENT = "PERCENT"


class CouponStatus(StrEnum):
    AVAILABLE = "AVAILABLE"
    USED = "USED"
    EXPIRED = "EXPIRED"


class PricingStatus(StrEnum):
    """What the coupon service decided for one order."""

    PRICING = "PRICING"
    PRICED = "PRICED"
    REJECTED = "REJECTED"
    CLOSED = "CLOSED"
    """The order failed: its coupon is back and a late StockReserved for it is ignored."""


def discount_value_problem(discount_type: DiscountType, value: int) -> str | None:
    """Why `value` is not a valid discount of this type (None when it is)."""
    if value < 1:
        return "discount_value must be at least 1"
    if discount_type is DiscountType.PERCENT and value > MAX_PERCENT:
        return f"a PERCENT discount_value must be between 1 and {MAX_PERCENT}"
    return None


@dataclass(frozen=True)
class CouponTerms:
    discount_type: DiscountType
    discount_value: int
    min_order_amount: int

    def discount_on(self, subtotal: int) -> int:
        """FIXED: the value; PERCENT: floor(subtotal * value / 100). Never more than the subtotal."""
        if self.discount_type is DiscountType.FIXED:
            discount = self.discount_value
        else:
            discount = subtotal * self.discount_value // 100
        return min(discount, subtotal)


def status_of(used_order_id: UUID | None, expires_at: datetime, now: datetime) -> CouponStatus:
    if used_order_id is not None:
        return CouponStatus.USED
    if expires_at < now:
        return CouponStatus.EXPIRED
    return CouponStatus.AVAILABLE


@dataclass(frozen=True)
class CouponDefinition:
    """A coupon as defined, with how many of its copies were issued."""

    id: int
    name: str
    terms: CouponTerms
    total_quantity: int
    issued_quantity: int
    valid_days: int

    @property
    def remaining_quantity(self) -> int:
        return self.total_quantity - self.issued_quantity


@dataclass(frozen=True)
class IssuedCoupon:
    """A copy of a coupon just issued to a user."""

    user_coupon_id: int
    coupon_id: int
    user_id: int
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class HeldCoupon:
    """A copy of a coupon in a user's hands, with the terms of its coupon."""

    user_coupon_id: int
    coupon_id: int
    user_id: int
    name: str
    terms: CouponTerms
    issued_at: datetime
    expires_at: datetime
    used_order_id: UUID | None

    def status(self, now: datetime) -> CouponStatus:
        return status_of(self.used_order_id, self.expires_at, now)

    def refusal(self, user_id: int, subtotal: int, now: datetime) -> str | None:
        """Why this coupon cannot pay for `user_id`'s order of `subtotal` won (None: it can)."""
        if self.user_id != user_id:
            return f"user coupon {self.user_coupon_id} belongs to another user"
        status = self.status(now)
        if status is CouponStatus.USED:
            return (
                f"user coupon {self.user_coupon_id} is already used by order {self.used_order_id}"
            )
        if status is CouponStatus.EXPIRED:
            return f"user coupon {self.user_coupon_id} expired at {self.expires_at.isoformat()}"
        if subtotal < self.terms.min_order_amount:
            return (
                f"the subtotal {subtotal:,} won is below the coupon's minimum order amount "
                f"of {self.terms.min_order_amount:,} won"
            )
        return None


@dataclass(frozen=True)
class Price:
    subtotal: int
    discount: int
    total: int


def subtotal_of(lines: Iterable[tuple[int, int]]) -> int:
    """The sum of quantity * unit price over (quantity, unit_price) lines."""
    return sum(quantity * unit_price for quantity, unit_price in lines)


def price(subtotal: int, terms: CouponTerms | None = None) -> Price:
    discount = 0 if terms is None else terms.discount_on(subtotal)
    return Price(subtotal=subtotal, discount=discount, total=subtotal - discount)
