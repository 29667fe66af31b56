from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from shopkit.database.engine import Base


class Coupon(Base):
    """A coupon definition. `issued_quantity <= total_quantity` is the last guard of a rush."""

    __tablename__ = "coupons"
    __table_args__ = (
        CheckConstraint("discount_type IN ('FIXED', 'PERCENT')", name="discount_type_known"),
        CheckConstraint("discount_value >= 1", name="discount_value_positive"),
        CheckConstraint(
            "discount_type <> 'PERCENT' OR discount_value <= 100", name="percent_at_most_100"
        ),
        CheckConstraint("total_quantity >= 1", name="total_quantity_positive"),
        CheckConstraint(
            "issued_quantity >= 0 AND issued_quantity <= total_quantity",
            name="issued_within_total",
        ),
        CheckConstraint("min_order_amount >= 0", name="min_order_amount_not_negative"),
        CheckConstraint("valid_days >= 1", name="valid_days_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    discount_type: Mapped[str] = mapped_column(String(16))
    discount_value: Mapped[int] = mapped_column(BigInteger)
    total_quantity: Mapped[int] = mapped_column(BigInteger)
    issued_quantity: Mapped[int] = mapped_column(BigInteger, server_default="0")
    min_order_amount: Mapped[int] = mapped_column(BigInteger)
    valid_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class UserCoupon(Base):
    """A user's copy of a coupon: one per (coupon, user); `used_order_id` is set while an order
    holds it (one order per coupon, one coupon per order)."""

    __tablename__ = "user_coupons"
    __table_args__ = (
        UniqueConstraint("coupon_id", "user_id"),
        UniqueConstraint("used_order_id"),
        CheckConstraint("expires_at > issued_at", name="expires_after_issue"),
        Index("ix_user_coupons_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    coupon_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("coupons.id"))
    user_id: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_order_id: Mapped[UUID | None] = mapped_column(default=None)
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class OrderPricing(Base):
    """One row per order the service has seen: what it decided, and whether the order is closed.
    The primary key makes pricing and closing happen once, in whichever order the events come."""

    __tablename__ = "order_pricings"

    order_id: Mapped[UUID] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    user_coupon_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    subtotal: Mapped[int | None] = mapped_column(BigInteger, default=None)
    discount: Mapped[int | None] = mapped_column(BigInteger, default=None)
    total: Mapped[int | None] = mapped_column(BigInteger, default=None)
    detail: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
