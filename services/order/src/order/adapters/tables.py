from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shopkit.database.engine import Base


class OrderRow(Base):
    """One order and its saga state (see domain/order.py)."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'PAID', 'FAILED')", name="status_known"),
        CheckConstraint(
            "(status = 'FAILED') = (failure_reason IS NOT NULL)", name="failed_has_reason"
        ),
        CheckConstraint("(status = 'PAID') = (paid_at IS NOT NULL)", name="paid_has_time"),
        CheckConstraint(
            "(status = 'PENDING') = (finished_at IS NULL)", name="finished_unless_pending"
        ),
        CheckConstraint(
            "(subtotal IS NULL AND discount IS NULL AND total IS NULL)"
            " OR (discount >= 0 AND total >= 0 AND total = subtotal - discount)",
            name="pricing_consistent",
        ),
        CheckConstraint(
            "status <> 'PAID' OR (stock_reserved AND total IS NOT NULL AND paid_amount = total)",
            name="paid_is_complete",
        ),
        Index("ix_orders_user_id_created_at", "user_id", "created_at"),
        Index(
            "ix_orders_pending_deadline",
            "deadline_at",
            postgresql_where=text("status = 'PENDING'"),
        ),
    )

    order_id: Mapped[UUID] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    user_coupon_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str | None] = mapped_column(String(32))
    stock_reserved: Mapped[bool]
    subtotal: Mapped[int | None] = mapped_column(BigInteger)
    discount: Mapped[int | None] = mapped_column(BigInteger)
    total: Mapped[int | None] = mapped_column(BigInteger)
    paid_amount: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    deadline_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class OrderLineRow(Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "product_id", name="uq_order_lines_order_id_product_id"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        CheckConstraint("status IN ('ORDERED', 'EXCLUDED')", name="status_known"),
        CheckConstraint(
            "(status = 'EXCLUDED') = (excluded_reason IS NOT NULL)", name="excluded_has_reason"
        ),
    )

    order_id: Mapped[UUID] = mapped_column(
        ForeignKey("orders.order_id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    excluded_reason: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(Text)
    unit_price: Mapped[int | None] = mapped_column(BigInteger)
