"""The order aggregate's state machine, without a database."""

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from order.domain.order import (
    Effect,
    IllegalTransition,
    InvalidOrder,
    LineStatus,
    Order,
    OrderStatus,
    SagaInconsistency,
)
from shop_contracts import (
    ExcludedLine,
    ExclusionReason,
    FailureReason,
    OrderCreated,
    OrderFailed,
    OrderPaid,
    PaidLine,
    ReservedLine,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=5)
TIMEOUT = timedelta(seconds=30)


def new_order(items: list[tuple[int, int]] | None = None, user_coupon_id: int | None = 7) -> Order:
    order = Order.place(
        order_id=uuid.uuid4(),
        user_id=42,
        items=items or [(1, 2), (2, 1)],
        user_coupon_id=user_coupon_id,
        now=T0,
        timeout=TIMEOUT,
    )
    order.pull_events()
    return order


RESERVED_BOTH = [
    ReservedLine(product_id=1, name="Tea", quantity=2, unit_price=3_000),
    ReservedLine(product_id=2, name="Cup", quantity=1, unit_price=10_000),
]


def reserve_both(order: Order, now: datetime = LATER) -> Effect:
    return order.record_reservation(RESERVED_BOTH, [], now)


def price(order: Order, now: datetime = LATER) -> Effect:
    return order.record_pricing(16_000, 1_000, 15_000, now)


def pay(order: Order, now: datetime = LATER) -> Effect:
    return order.record_payment(15_000, now)


FACTS: dict[str, Callable[[Order], Effect]] = {
    "reservation": reserve_both,
    "pricing": price,
    "payment": pay,
}


def test_a_placed_order_is_pending_and_records_order_created() -> None:
    order = Order.place(
        order_id=uuid.uuid4(),
        user_id=42,
        items=[(5, 3), (1, 1)],
        user_coupon_id=None,
        now=T0,
        timeout=TIMEOUT,
    )
    assert order.status is OrderStatus.PENDING
    assert order.deadline_at == T0 + TIMEOUT
    assert [(line.product_id, line.quantity, line.status) for line in order.lines] == [
        (5, 3, LineStatus.ORDERED),
        (1, 1, LineStatus.ORDERED),
    ]
    assert order.subtotal is order.discount is order.total is None
    [created] = order.pull_events()
    assert isinstance(created, OrderCreated)
    assert [(line.product_id, line.quantity) for line in created.lines] == [(5, 3), (1, 1)]
    assert order.pull_events() == []


@pytest.mark.parametrize(
    "items",
    [[], [(i, 1) for i in range(1, 52)], [(1, 1), (1, 2)], [(1, 0)], [(1, 1_001)]],
    ids=["no-lines", "51-lines", "same-product-twice", "zero-quantity", "too-many"],
)
def test_an_invalid_order_cannot_be_placed(items: list[tuple[int, int]]) -> None:
    with pytest.raises(InvalidOrder):
        Order.place(
            order_id=uuid.uuid4(),
            user_id=1,
            items=items,
            user_coupon_id=None,
            now=T0,
            timeout=TIMEOUT,
        )


@pytest.mark.parametrize("arrival", list(itertools.permutations(FACTS)), ids="→".join)
def test_the_order_is_paid_when_the_last_of_the_three_facts_arrives_in_any_order(
    arrival: tuple[str, ...],
) -> None:
    order = new_order()
    *first, last = arrival
    for fact in first:
        assert FACTS[fact](order) is Effect.APPLIED
        assert order.status is OrderStatus.PENDING
        assert order.pull_events() == []
    assert FACTS[last](order) is Effect.APPLIED
    [paid] = order.pull_events()
    assert order.status is OrderStatus.PAID
    assert order.failure_reason is None
    assert order.paid_at is not None
    assert (order.subtotal, order.discount, order.total) == (16_000, 1_000, 15_000)
    assert isinstance(paid, OrderPaid)
    assert paid.lines == [
        PaidLine(product_id=1, name="Tea", quantity=2, unit_price=3_000),
        PaidLine(product_id=2, name="Cup", quantity=1, unit_price=10_000),
    ]
    assert (paid.subtotal, paid.discount, paid.total) == (16_000, 1_000, 15_000)
    assert paid.user_coupon_id == 7
    assert paid.paid_at == order.paid_at


def test_a_payment_before_the_price_is_kept_and_the_order_stays_pending() -> None:
    order = new_order()
    assert pay(order) is Effect.APPLIED
    assert order.status is OrderStatus.PENDING
    assert order.paid_amount == 15_000
    assert reserve_both(order) is Effect.APPLIED
    assert order.status is OrderStatus.PENDING
    assert order.pull_events() == []
    assert price(order) is Effect.APPLIED
    assert order.is_final
    assert order.paid_at is not None


def test_excluded_lines_are_recorded_and_left_out_of_the_paid_order() -> None:
    order = new_order([(1, 2), (2, 1), (3, 4)])
    order.record_reservation(
        [ReservedLine(product_id=2, name="Cup", quantity=1, unit_price=10_000)],
        [
            ExcludedLine(product_id=1, quantity=2, reason=ExclusionReason.OUT_OF_STOCK),
            ExcludedLine(product_id=3, quantity=4, reason=ExclusionReason.PRODUCT_NOT_FOUND),
        ],
        LATER,
    )
    assert [(line.status, line.excluded_reason, line.unit_price) for line in order.lines] == [
        (LineStatus.EXCLUDED, ExclusionReason.OUT_OF_STOCK, None),
        (LineStatus.ORDERED, None, 10_000),
        (LineStatus.EXCLUDED, ExclusionReason.PRODUCT_NOT_FOUND, None),
    ]
    order.record_pricing(10_000, 0, 10_000, LATER)
    order.record_payment(10_000, LATER)
    [paid] = order.pull_events()
    assert isinstance(paid, OrderPaid)
    assert [line.product_id for line in paid.lines] == [2]


def fail_by_stock(order: Order) -> Effect:
    return order.reject_stock(
        [
            ExcludedLine(product_id=1, quantity=2, reason=ExclusionReason.OUT_OF_STOCK),
            ExcludedLine(product_id=2, quantity=1, reason=ExclusionReason.PRODUCT_NOT_FOUND),
        ],
        LATER,
    )


FAILURES: dict[str, tuple[Callable[[Order], Effect], FailureReason]] = {
    "stock-rejected": (fail_by_stock, FailureReason.OUT_OF_STOCK),
    "coupon-rejected": (lambda o: o.reject_coupon(LATER), FailureReason.COUPON_INVALID),
    "payment-declined": (lambda o: o.decline_payment(LATER), FailureReason.INSUFFICIENT_BALANCE),
    "deadline": (lambda o: o.expire(T0 + TIMEOUT), FailureReason.TIMEOUT),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_rejection_fails_the_order_with_its_reason_and_records_order_failed(
    failure: str,
) -> None:
    fail, reason = FAILURES[failure]
    order = new_order()
    assert fail(order) is Effect.APPLIED
    assert order.status is OrderStatus.FAILED
    assert order.failure_reason is reason
    assert order.finished_at is not None
    assert order.paid_at is None
    [failed] = order.pull_events()
    assert failed == OrderFailed(
        order_id=order.order_id, user_id=42, reason=reason, user_coupon_id=7
    )


def test_a_stock_rejection_marks_every_line_excluded_with_its_reason() -> None:
    order = new_order()
    fail_by_stock(order)
    assert [(line.status, line.excluded_reason) for line in order.lines] == [
        (LineStatus.EXCLUDED, ExclusionReason.OUT_OF_STOCK),
        (LineStatus.EXCLUDED, ExclusionReason.PRODUCT_NOT_FOUND),
    ]


def test_a_reservation_that_reserved_nothing_fails_the_order_out_of_stock() -> None:
    order = new_order([(1, 2)])
    order.record_reservation(
        [], [ExcludedLine(product_id=1, quantity=2, reason=ExclusionReason.OUT_OF_STOCK)], LATER
    )
    assert order.status is OrderStatus.FAILED
    assert order.failure_reason is FailureReason.OUT_OF_STOCK


ALL_FACTS: dict[str, Callable[[Order], Effect]] = {
    **FACTS,
    **{name: fail for name, (fail, _) in FAILURES.items()},
}


def paid_order() -> Order:
    order = new_order()
    for fact in FACTS.values():
        fact(order)
    order.pull_events()
    return order


def failed_order() -> Order:
    order = new_order()
    order.reject_coupon(LATER)
    order.pull_events()
    return order


@pytest.mark.parametrize("make", [paid_order, failed_order], ids=["paid", "failed"])
@pytest.mark.parametrize("fact", ALL_FACTS)
def test_a_late_fact_changes_nothing_once_the_order_ended(
    make: Callable[[], Order], fact: str
) -> None:
    order = make()
    before = (order.status, order.failure_reason, list(order.lines), order.pricing, order.paid_at)
    assert ALL_FACTS[fact](order) is Effect.TOO_LATE
    after = (order.status, order.failure_reason, list(order.lines), order.pricing, order.paid_at)
    assert after == before
    assert order.pull_events() == []


def test_a_payment_after_the_deadline_leaves_the_order_failed_with_timeout() -> None:
    order = new_order()
    reserve_both(order)
    price(order)
    order.expire(T0 + TIMEOUT)
    order.pull_events()
    assert pay(order) is Effect.TOO_LATE
    assert (order.status, order.failure_reason) == (OrderStatus.FAILED, FailureReason.TIMEOUT)
    assert order.pull_events() == []


@pytest.mark.parametrize("fact", FACTS)
def test_the_same_fact_twice_is_a_duplicate(fact: str) -> None:
    order = new_order()
    assert FACTS[fact](order) is Effect.APPLIED
    assert FACTS[fact](order) is Effect.DUPLICATE
    assert order.status is OrderStatus.PENDING


def test_the_deadline_cannot_fail_an_order_early() -> None:
    order = new_order()
    with pytest.raises(IllegalTransition):
        order.expire(T0 + TIMEOUT - timedelta(microseconds=1))
    assert order.status is OrderStatus.PENDING
    assert order.is_overdue(T0 + TIMEOUT)


def test_a_paid_order_can_still_time_out_only_while_pending() -> None:
    order = paid_order()
    assert order.expire(T0 + TIMEOUT * 2) is Effect.TOO_LATE
    assert order.status is OrderStatus.PAID


@pytest.mark.parametrize(
    ("reserved", "excluded"),
    [
        ([ReservedLine(product_id=1, name="Tea", quantity=2, unit_price=1)], []),
        ([*RESERVED_BOTH, ReservedLine(product_id=9, name="X", quantity=1, unit_price=1)], []),
        (
            [ReservedLine(product_id=1, name="Tea", quantity=3, unit_price=1), RESERVED_BOTH[1]],
            [],
        ),
        (
            RESERVED_BOTH,
            [ExcludedLine(product_id=1, quantity=2, reason=ExclusionReason.OUT_OF_STOCK)],
        ),
    ],
    ids=["a-line-missing", "an-unknown-line", "another-quantity", "reserved-and-excluded"],
)
def test_a_reservation_that_does_not_match_the_lines_is_refused(
    reserved: list[ReservedLine], excluded: list[ExcludedLine]
) -> None:
    order = new_order()
    with pytest.raises(SagaInconsistency):
        order.record_reservation(reserved, excluded, LATER)
    assert not order.stock_reserved
    assert all(line.unit_price is None for line in order.lines)


@pytest.mark.parametrize("first", ["pricing", "payment"])
def test_a_payment_of_another_amount_than_the_price_is_refused(first: str) -> None:
    order = new_order()
    if first == "pricing":
        price(order)
        with pytest.raises(SagaInconsistency):
            order.record_payment(14_999, LATER)
        assert order.paid_amount is None
    else:
        order.record_payment(14_999, LATER)
        with pytest.raises(SagaInconsistency):
            price(order)
        assert order.pricing is None
    assert order.status is OrderStatus.PENDING


def test_a_price_that_does_not_add_up_is_refused() -> None:
    order = new_order()
    with pytest.raises(SagaInconsistency):
        order.record_pricing(10_000, 1_000, 10_000, LATER)
