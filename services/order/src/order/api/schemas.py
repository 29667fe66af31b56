from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from order.domain.order import MAX_LINES, Order
from order.service.ordering import PlaceOrder
from shop_contracts import MAX_QUANTITY, ExclusionReason, FailureReason
from shopkit.http.app import StrictId
from shopkit.http.numbers import Integral


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: StrictId
    quantity: Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY), Integral]


class PlaceOrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictId
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=MAX_LINES)]
    user_coupon_id: StrictId | None = Field(
        default=None, description="A coupon the user was issued, applied to the reserved lines."
    )

    @field_validator("items")
    @classmethod
    def _distinct_products(cls, items: list[OrderItem]) -> list[OrderItem]:
        if len({item.product_id for item in items}) != len(items):
            raise ValueError("each product may appear on one line only")
        return items

    def command(self) -> PlaceOrder:
        return PlaceOrder(
            user_id=self.user_id,
            items=[(item.product_id, item.quantity) for item in self.items],
            user_coupon_id=self.user_coupon_id,
        )


class OrderLineView(BaseModel):
    product_id: int
    quantity: int
    unit_price: int | None = Field(
        description="Price per unit when the stock was reserved; null until then and for "
        "excluded lines."
    )
    status: Literal["ORDERED", "EXCLUDED"]
    excluded_reason: ExclusionReason | None


class OrderView(BaseModel):
    order_id: UUID
    user_id: int
    status: Literal["PENDING", "PAID", "FAILED"]
    failure_reason: FailureReason | None = Field(description="Set when status is FAILED.")
    lines: list[OrderLineView]
    user_coupon_id: int | None
    subtotal: int | None = Field(
        description="Sum of the ordered lines; null until the order is priced."
    )
    discount: int | None = Field(description="Coupon discount; null until the order is priced.")
    total: int | None = Field(description="What the user pays; null until the order is priced.")
    created_at: datetime
    paid_at: datetime | None

    @classmethod
    def of(cls, order: Order) -> "OrderView":
        return cls(
            order_id=order.order_id,
            user_id=order.user_id,
            status=order.status.value,
            failure_reason=order.failure_reason,
            lines=[
                OrderLineView(
                    product_id=line.product_id,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    status=line.status.value,
                    excluded_reason=line.excluded_reason,
                )
                for line in order.lines
            ],
            user_coupon_id=order.user_coupon_id,
            subtotal=order.subtotal,
            discount=order.discount,
            total=order.total,
            created_at=order.created_at,
            paid_at=order.paid_at,
        )


class OrderList(BaseModel):
    items: list[OrderView]
