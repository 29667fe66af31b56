"""The order aggregate: the saga's state, kept by the order service.

An order is PENDING until it becomes PAID or FAILED (with a reason); nothing leaves a terminal
state. The other services answer on different topics, so the order service may learn the facts
of one order in any order (the payment before the price, the price before the reservation).
Each fact is recorded on its own; the order becomes PAID when the last of the three it needs —
the reservation (lines and unit prices), the price (subtotal, discount, total) and the payment —
has been recorded, whichever that is. Any rejection, or the deadline, fails it at once. A fact
about an order that already ended changes nothing: the others compensate on `OrderFailed`.

Every change records the event it causes (`OrderCreated`, `OrderPaid`, `OrderFailed`); the
repository stages them in the outbox in the same transaction.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from uuid import UUID

from shop_contracts import (
    MAX_QUANTITY,
    ErrorCode,
    Event,
    ExcludedLine,
    ExclusionReason,
    FailureReason,
    OrderCreated,
    OrderFailed,
    OrderLine,
    OrderPaid,
    PaidLine,
    ReservedLine,
)
from shopkit.errors import NotFound, Unprocessable

MAX_LINES: Final = 50


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    FAILED = "FAILED"


class LineStatus(StrEnum):
    ORDERED = "ORDERED"
    EXCLUDED = "EXCLUDED"


class Effect(StrEnum):
    """What recording a saga fact did to the order."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    """The order already knows this fact (the same fact sent again under a new event id)."""
    TOO_LATE = "too_late"
    """The order had already ended; the fact changes nothing."""


_TRANSITIONS: Final[dict[OrderStatus, frozenset[OrderStatus]]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.FAILED}),
    OrderStatus.PAID: frozenset(),
    OrderStatus.FAILED: frozenset(),
}


class IllegalTransition(Exception):
    def __init__(self, order_id: UUID, current: OrderStatus, wanted: OrderStatus) -> None:
        super().__init__(f"order {order_id}: {current} → {wanted} is not allowed")


class InvalidOrder(Unprocessable):
    """The order as requested breaks an invariant (the API rejects these before they get here)."""

    code = ErrorCode.VALIDATION_ERROR

    def __init__(self, detail: str) -> None:
        super().__init__(self.code, detail)


class OrderNotFound(NotFound):
    """There is no order with this id."""

    code = ErrorCode.ORDER_NOT_FOUND

    def __init__(self, order_id: UUID) -> None:
        super().__init__(self.code, f"There is no order {order_id}.")


class SagaInconsistency(Exception):
    """An event contradicts what the order knows (a bug in another service). The event is
    refused — the consumer dead-letters it — and the deadline then fails and compensates the order."""


@dataclass(frozen=True)
class Line:
    product_id: int
    quantity: int
    status: LineStatus = LineStatus.ORDERED
    name: str | None = None
    unit_price: int | None = None
    excluded_reason: ExclusionReason | None = None


@dataclass(frozen=True)
class Pricing:
    subtotal: int
    discount: int
    total: int


@dataclass
class Order:
    order_id: UUID
    user_id: int
    lines: list[Line]
    user_coupon_id: int | None
    created_at: datetime
    deadline_at: datetime
    status: OrderStatus = OrderStatus.PENDING
    failure_reason: FailureReason | None = None
    stock_reserved: bool = False
    pricing: Pricing | None = None
    paid_amount: int | None = None
    """Set once the point service took the money; the order may still wait for other facts."""
    paid_at: datetime | None = None
    finished_at: datetime | None = None
    events: list[Event] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def place(
        cls,
        *,
        order_id: UUID,
        user_id: int,
        items: Sequence[tuple[int, int]],
        user_coupon_id: int | None,
        now: datetime,
        timeout: timedelta,
    ) -> "Order":
        """A new PENDING order for `items` (product id, quantity); records `OrderCreated`."""
        if not 1 <= len(items) <= MAX_LINES:
            raise InvalidOrder(f"an order has 1..{MAX_LINES} lines")
        if len({product_id for product_id, _ in items}) != len(items):
            raise InvalidOrder("each product may appear on one line only")
        if not all(1 <= quantity <= MAX_QUANTITY for _, quantity in items):
            raise InvalidOrder(f"quantities are 1..{MAX_QUANTITY}")
        order = cls(
            order_id=order_id,
            user_id=user_id,
            lines=[Line(product_id=p, quantity=q) for p, q in items],
            user_coupon_id=user_coupon_id,
            created_at=now,
            deadline_at=now + timeout,
        )
        order.events.append(
            OrderCreated(
                order_id=order_id,
                user_id=user_id,
                lines=[OrderLine(product_id=p, quantity=q) for p, q in items],
                user_coupon_id=user_coupon_id,
            )
        )
        return order

    @property
    def is_final(self) -> bool:
        return self.status is not OrderStatus.PENDING

    @property
    def subtotal(self) -> int | None:
        return self.pricing.subtotal if self.pricing else None

    @property
    def discount(self) -> int | None:
        return self.pricing.discount if self.pricing else None

    @property
    def total(self) -> int | None:
        return self.pricing.total if self.pricing else None

    def is_overdue(self, now: datetime) -> bool:
        return not self.is_final and now >= self.deadline_at

    def pull_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    # -- saga facts: product ------------------------------------------------------------------

    def record_reservation(
        self, reserved: Sequence[ReservedLine], excluded: Sequence[ExcludedLine], now: datetime
    ) -> Effect:
        """Stock was taken for `reserved` (with names and unit prices); `excluded` were left out."""
        if self.is_final:
            return Effect.TOO_LATE
        if self.stock_reserved:
            return Effect.DUPLICATE
        ordered = {line.product_id: line.quantity for line in self.lines}
        answered = [r.product_id for r in reserved] + [e.product_id for e in excluded]
        if sorted(answered) != sorted(ordered):
            raise SagaInconsistency(
                f"the reservation answers for {sorted(answered)}, the order has {sorted(ordered)}"
            )
        if any(r.quantity != ordered[r.product_id] for r in reserved):
            raise SagaInconsistency("a reserved quantity differs from the ordered one")
        by_product = {r.product_id: r for r in reserved}
        reasons = {e.product_id: e.reason for e in excluded}
        self.lines = [
            replace(
                line,
                status=LineStatus.ORDERED,
                name=by_product[line.product_id].name,
                unit_price=by_product[line.product_id].unit_price,
            )
            if line.product_id in by_product
            else replace(line, status=LineStatus.EXCLUDED, excluded_reason=reasons[line.product_id])
            for line in self.lines
        ]
        self.stock_reserved = True
        if not reserved:
            self._fail(FailureReason.OUT_OF_STOCK, now)
        else:
            self._pay_if_complete(now)
        return Effect.APPLIED

    def reject_stock(self, excluded: Sequence[ExcludedLine], now: datetime) -> Effect:
        """No line could be reserved: the order fails with OUT_OF_STOCK."""
        if self.is_final:
            return Effect.TOO_LATE
        reasons = {e.product_id: e.reason for e in excluded}
        self.lines = [
            replace(
                line,
                status=LineStatus.EXCLUDED,
                excluded_reason=reasons.get(line.product_id, ExclusionReason.OUT_OF_STOCK),
            )
            for line in self.lines
        ]
        self._fail(FailureReason.OUT_OF_STOCK, now)
        return Effect.APPLIED

    # -- saga facts: coupon -------------------------------------------------------------------

    def record_pricing(self, subtotal: int, discount: int, total: int, now: datetime) -> Effect:
        if self.is_final:
            return Effect.TOO_LATE
        if self.pricing is not None:
            return Effect.DUPLICATE
        if total != subtotal - discount or min(subtotal, discount, total) < 0:
            raise SagaInconsistency(f"inconsistent price {subtotal} - {discount} = {total}")
        if self.paid_amount is not None and self.paid_amount != total:
            raise SagaInconsistency(f"priced at {total} but {self.paid_amount} was paid")
        self.pricing = Pricing(subtotal=subtotal, discount=discount, total=total)
        self._pay_if_complete(now)
        return Effect.APPLIED

    def reject_coupon(self, now: datetime) -> Effect:
        if self.is_final:
            return Effect.TOO_LATE
        self._fail(FailureReason.COUPON_INVALID, now)
        return Effect.APPLIED

    # -- saga facts: point --------------------------------------------------------------------

    def record_payment(self, amount: int, now: datetime) -> Effect:
        """The point service took `amount`; PAID now or as soon as the other facts are in."""
        if self.is_final:
            return Effect.TOO_LATE
        if self.paid_amount is not None:
            return Effect.DUPLICATE
        if self.pricing is not None and self.pricing.total != amount:
            raise SagaInconsistency(f"priced at {self.pricing.total} but {amount} was paid")
        self.paid_amount = amount
        self._pay_if_complete(now)
        return Effect.APPLIED

    def decline_payment(self, now: datetime) -> Effect:
        if self.is_final:
            return Effect.TOO_LATE
        self._fail(FailureReason.INSUFFICIENT_BALANCE, now)
        return Effect.APPLIED

    # -- the deadline -------------------------------------------------------------------------

    def expire(self, now: datetime) -> Effect:
        """The saga ran out of time: FAILED with TIMEOUT (the others compensate, even a payment)."""
        if self.is_final:
            return Effect.TOO_LATE
        if not self.is_overdue(now):
            raise IllegalTransition(self.order_id, self.status, OrderStatus.FAILED)
        self._fail(FailureReason.TIMEOUT, now)
        return Effect.APPLIED

    # -- transitions ----------------------------------------------------------------------------

    def _move(self, to: OrderStatus, now: datetime) -> None:
        if to not in _TRANSITIONS[self.status]:
            raise IllegalTransition(self.order_id, self.status, to)
        self.status = to
        self.finished_at = now

    def _pay_if_complete(self, now: datetime) -> None:
        pricing = self.pricing
        if not (self.stock_reserved and pricing is not None and self.paid_amount is not None):
            return
        lines = self._paid_lines()
        self._move(OrderStatus.PAID, now)
        self.paid_at = now
        self.events.append(
            OrderPaid(
                order_id=self.order_id,
                user_id=self.user_id,
                lines=lines,
                user_coupon_id=self.user_coupon_id,
                subtotal=pricing.subtotal,
                discount=pricing.discount,
                total=pricing.total,
                paid_at=now,
            )
        )

    def _paid_lines(self) -> list[PaidLine]:
        paid = []
        for line in self.lines:
            if line.status is LineStatus.EXCLUDED:
                continue
            if line.name is None or line.unit_price is None:
                raise SagaInconsistency(f"line {line.product_id} was never priced")
            paid.append(
                PaidLine(
                    product_id=line.product_id,
                    name=line.name,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                )
            )
        return paid

    def _fail(self, reason: FailureReason, now: datetime) -> None:
        self._move(OrderStatus.FAILED, now)
        self.failure_reason = reason
        self.events.append(
            OrderFailed(
                order_id=self.order_id,
                user_id=self.user_id,
                reason=reason,
                user_coupon_id=self.user_coupon_id,
            )
        )
