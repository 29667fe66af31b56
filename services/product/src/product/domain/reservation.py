"""Reserving the stock of one order, and giving it back.

An order's lines are taken one at a time, in product-id order (so two orders always lock
products in the same order and never deadlock). A line that cannot be taken — unknown product,
not enough stock — is excluded with its reason; that is never fatal on its own. The outcome is
the event the reservation records: `StockReserved` when at least one line was taken, else
`StockRejected`.

Each order has one reservation status, which moves only forward:

    (none) → RESERVED → RELEASED        stock taken, later given back exactly once
    (none) → REJECTED                   nothing was taken, nothing to give back
    (none) → RELEASED                   the order failed before it was ever reserved
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from shop_contracts import (
    ExcludedLine,
    ExclusionReason,
    OrderCreated,
    OrderLine,
    ReservedLine,
    StockRejected,
    StockReserved,
)


class ReservationStatus(StrEnum):
    RESERVED = "RESERVED"
    REJECTED = "REJECTED"
    RELEASED = "RELEASED"


def lines_in_lock_order(lines: Iterable[OrderLine]) -> list[OrderLine]:
    """One line per product (the quantities of a repeated product summed), by product id."""
    quantities: dict[int, int] = {}
    for line in lines:
        quantities[line.product_id] = quantities.get(line.product_id, 0) + line.quantity
    return [OrderLine(product_id=p, quantity=q) for p, q in sorted(quantities.items())]


@dataclass
class Reservation:
    """The stock taken for one order, line by line; records the event that reports it."""

    order_id: UUID
    user_id: int
    user_coupon_id: int | None
    reserved: list[ReservedLine] = field(default_factory=list)
    excluded: list[ExcludedLine] = field(default_factory=list)

    @classmethod
    def of(cls, order: OrderCreated) -> "Reservation":
        return cls(order.order_id, order.user_id, order.user_coupon_id)

    def take(self, line: OrderLine, *, name: str, unit_price: int) -> None:
        self.reserved.append(
            ReservedLine(
                product_id=line.product_id, name=name, quantity=line.quantity, unit_price=unit_price
            )
        )

    def exclude(self, line: OrderLine, reason: ExclusionReason) -> None:
        self.excluded.append(
            ExcludedLine(product_id=line.product_id, quantity=line.quantity, reason=reason)
        )

    @property
    def status(self) -> ReservationStatus:
        return ReservationStatus.RESERVED if self.reserved else ReservationStatus.REJECTED

    def outcome(self) -> StockReserved | StockRejected:
        if self.reserved:
            return StockReserved(
                order_id=self.order_id,
                user_id=self.user_id,
                user_coupon_id=self.user_coupon_id,
                reserved=self.reserved,
                excluded=self.excluded,
            )
        return StockRejected(order_id=self.order_id, user_id=self.user_id, excluded=self.excluded)
