from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from coupon.domain.coupons import (
    MAX_PERCENT,
    MAX_VALID_DAYS,
    CouponDefinition,
    CouponStatus,
    CouponTerms,
    DiscountType,
    HeldCoupon,
    IssuedCoupon,
    discount_value_problem,
)
from shopkit.http.app import MAX_ID, StrictId
from shopkit.http.numbers import Integral
from shopkit.http.text import trimmed_text

Won = Annotated[int, Field(strict=True, ge=0, le=MAX_ID), Integral]
Count = Annotated[int, Field(strict=True, ge=1, le=MAX_ID), Integral]


class CreateCouponRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        # What `_fits_the_type` checks, in the schema too: a PERCENT discount is 1..100.
        json_schema_extra={
            "if": {
                "properties": {"discount_type": {"const": DiscountType.PERCENT.value}},
                "required": ["discount_type"],
            },
            "then": {"properties": {"discount_value": {"maximum": MAX_PERCENT}}},
        },
    )

    name: Annotated[
        str,
        StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=100),
        trimmed_text(100),
    ]
    discount_type: DiscountType
    discount_value: Count
    total_quantity: Count
    valid_days: Annotated[int, Field(strict=True, ge=1, le=MAX_VALID_DAYS), Integral]
    min_order_amount: Won

    @field_validator("discount_value")
    @classmethod
    def _fits_the_type(cls, value: int, info: ValidationInfo) -> int:
        discount_type = info.data.get("discount_type")
        if discount_type is not None:
            problem = discount_value_problem(discount_type, value)
            if problem is not None:
                raise ValueError(problem)
        return value

    def terms(self) -> CouponTerms:
        return CouponTerms(
            discount_type=self.discount_type,
            discount_value=self.discount_value,
            min_order_amount=self.min_order_amount,
        )


class CouponResponse(BaseModel):
    id: int
    name: str
    discount_type: DiscountType
    discount_value: int
    total_quantity: int
    issued_quantity: int
    remaining_quantity: int
    min_order_amount: int
    valid_days: int

    @classmethod
    def of(cls, coupon: CouponDefinition) -> "CouponResponse":
        return cls(
            id=coupon.id,
            name=coupon.name,
            discount_type=coupon.terms.discount_type,
            discount_value=coupon.terms.discount_value,
            total_quantity=coupon.total_quantity,
            issued_quantity=coupon.issued_quantity,
            remaining_quantity=coupon.remaining_quantity,
            min_order_amount=coupon.terms.min_order_amount,
            valid_days=coupon.valid_days,
        )


class IssueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictId


class IssuedCouponResponse(BaseModel):
    user_coupon_id: int
    coupon_id: int
    user_id: int
    status: Literal[CouponStatus.AVAILABLE] = CouponStatus.AVAILABLE
    issued_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, issued: IssuedCoupon) -> "IssuedCouponResponse":
        return cls(
            user_coupon_id=issued.user_coupon_id,
            coupon_id=issued.coupon_id,
            user_id=issued.user_id,
            issued_at=issued.issued_at,
            expires_at=issued.expires_at,
        )


class UserCouponItem(BaseModel):
    user_coupon_id: int
    coupon_id: int
    name: str
    discount_type: DiscountType
    discount_value: int
    min_order_amount: int
    status: CouponStatus
    issued_at: datetime
    expires_at: datetime
    used_order_id: UUID | None

    @classmethod
    def of(cls, held: HeldCoupon, now: datetime) -> "UserCouponItem":
        return cls(
            user_coupon_id=held.user_coupon_id,
            coupon_id=held.coupon_id,
            name=held.name,
            discount_type=held.terms.discount_type,
            discount_value=held.terms.discount_value,
            min_order_amount=held.terms.min_order_amount,
            status=held.status(now),
            issued_at=held.issued_at,
            expires_at=held.expires_at,
            used_order_id=held.used_order_id,
        )


class UserCouponsResponse(BaseModel):
    items: list[UserCouponItem]
