"""The reservation rules with an in-memory store: which lines are taken, which are excluded
and why, and that reserving and releasing each happen at most once per order."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

import pytest
from pydantic import ValidationError

from product.adapters.repository import Released, Taken
from product.domain.catalogue import refuse_control_characters
from product.domain.reservation import (
    Reservation,
    ReservationStatus,
    lines_in_lock_order,
)
from product.service.reservations import release, reserve
from shop_contracts import (
    MAX_QUANTITY,
    ExcludedLine,
    ExclusionReason,
    OrderLine,
    ReservedLine,
    StockRejected,
    StockReserved,
)

from ..conftest import BUYER, order_created, order_failed


@dataclass
class FakeProduct:
    name: str
    price: int
    stock: int


@dataclass
class FakeStore:
    """Behaves like ProductRepository: conditional takes, one status row per order."""

    products: dict[int, FakeProduct] = field(default_factory=dict)
    orders: dict[UUID, ReservationStatus] = field(default_factory=dict)
    lines: dict[UUID, list[tuple[ReservedLine, ReservationStatus]]] = field(default_factory=dict)
    takes: list[int] = field(default_factory=list)
    give_backs: list[int] = field(default_factory=list)

    async def exists(self, product_id: int) -> bool:
        return product_id in self.products

    async def take_stock(self, product_id: int, quantity: int) -> Taken | None:
        self.takes.append(product_id)
        product = self.products.get(product_id)
        if product is None or product.stock < quantity:
            return None
        product.stock -= quantity
        return Taken(name=product.name, unit_price=product.price)

    async def give_back(self, product_id: int, quantity: int) -> None:
        self.give_backs.append(product_id)
        self.products[product_id].stock += quantity

    async def claim_order(self, order_id: UUID, user_id: int, status: ReservationStatus) -> bool:
        if order_id in self.orders:
            return False
        self.orders[order_id] = status
        return True

    async def set_order_status(self, order_id: UUID, status: ReservationStatus) -> None:
        self.orders[order_id] = status

    async def record_lines(self, order_id: UUID, lines: Sequence[ReservedLine]) -> None:
        self.lines[order_id] = [(line, ReservationStatus.RESERVED) for line in lines]

    async def mark_released(self, order_id: UUID) -> bool:
        if self.orders.get(order_id) is not ReservationStatus.RESERVED:
            return False
        self.orders[order_id] = ReservationStatus.RELEASED
        return True

    async def release_lines(self, order_id: UUID) -> list[Released]:
        held = [line for line, s in self.lines.get(order_id, []) if s is ReservationStatus.RESERVED]
        self.lines[order_id] = [(line, ReservationStatus.RELEASED) for line in held]
        return sorted(
            (Released(line.product_id, line.quantity) for line in held),
            key=lambda r: r.product_id,
        )


def store_with(**stock: int) -> FakeStore:
    """Products p1, p2, … named by their id, priced id * 1,000."""
    return FakeStore(
        products={
            int(key[1:]): FakeProduct(name=key, price=int(key[1:]) * 1_000, stock=units)
            for key, units in stock.items()
        }
    )


def stock_of(store: FakeStore) -> dict[int, int]:
    return {pid: p.stock for pid, p in store.products.items()}


def test_lines_are_put_in_product_id_order_with_repeated_products_merged() -> None:
    lines = [OrderLine(product_id=p, quantity=q) for p, q in [(9, 1), (2, 3), (5, 1), (2, 4)]]
    assert lines_in_lock_order(lines) == [
        OrderLine(product_id=2, quantity=7),
        OrderLine(product_id=5, quantity=1),
        OrderLine(product_id=9, quantity=1),
    ]


def test_a_reservation_with_a_taken_line_reports_stock_reserved() -> None:
    created = order_created((1, 2), user_coupon_id=3)
    reservation = Reservation.of(created)
    reservation.take(OrderLine(product_id=1, quantity=2), name="p1", unit_price=500)
    reservation.exclude(OrderLine(product_id=4, quantity=1), ExclusionReason.OUT_OF_STOCK)
    assert reservation.status is ReservationStatus.RESERVED
    assert reservation.outcome() == StockReserved(
        order_id=created.order_id,
        user_id=BUYER,
        user_coupon_id=3,
        reserved=[ReservedLine(product_id=1, name="p1", quantity=2, unit_price=500)],
        excluded=[ExcludedLine(product_id=4, quantity=1, reason=ExclusionReason.OUT_OF_STOCK)],
    )


def test_a_reservation_without_taken_lines_reports_stock_rejected() -> None:
    created = order_created((4, 1))
    reservation = Reservation.of(created)
    reservation.exclude(OrderLine(product_id=4, quantity=1), ExclusionReason.PRODUCT_NOT_FOUND)
    assert reservation.status is ReservationStatus.REJECTED
    assert reservation.outcome() == StockRejected(
        order_id=created.order_id,
        user_id=BUYER,
        excluded=[ExcludedLine(product_id=4, quantity=1, reason=ExclusionReason.PRODUCT_NOT_FOUND)],
    )


async def test_stock_is_taken_in_product_id_order_whatever_the_order_of_lines() -> None:
    store = store_with(p3=5, p1=5, p2=5)
    await reserve(store, order_created((3, 1), (1, 1), (2, 1)))
    assert store.takes == [1, 2, 3]


async def test_lines_that_cannot_be_taken_are_excluded_with_their_reason() -> None:
    store = store_with(p1=5, p2=1, p3=0)
    created = order_created((3, 1), (99, 2), (2, 2), (1, 5))
    outcome = await reserve(store, created)
    assert outcome == StockReserved(
        order_id=created.order_id,
        user_id=BUYER,
        reserved=[ReservedLine(product_id=1, name="p1", quantity=5, unit_price=1_000)],
        excluded=[
            ExcludedLine(product_id=2, quantity=2, reason=ExclusionReason.OUT_OF_STOCK),
            ExcludedLine(product_id=3, quantity=1, reason=ExclusionReason.OUT_OF_STOCK),
            ExcludedLine(product_id=99, quantity=2, reason=ExclusionReason.PRODUCT_NOT_FOUND),
        ],
    )
    assert stock_of(store) == {1: 0, 2: 1, 3: 0}
    assert store.orders[created.order_id] is ReservationStatus.RESERVED
    assert [line.product_id for line, _ in store.lines[created.order_id]] == [1]


async def test_an_order_with_nothing_available_is_rejected_and_takes_nothing() -> None:
    store = store_with(p1=1)
    created = order_created((1, 2), (50, 1))
    outcome = await reserve(store, created)
    assert isinstance(outcome, StockRejected)
    assert [(e.product_id, e.reason) for e in outcome.excluded] == [
        (1, ExclusionReason.OUT_OF_STOCK),
        (50, ExclusionReason.PRODUCT_NOT_FOUND),
    ]
    assert stock_of(store) == {1: 1}
    assert store.orders[created.order_id] is ReservationStatus.REJECTED


async def test_an_order_without_lines_is_rejected() -> None:
    store = store_with(p1=5)
    created = order_created()
    assert await reserve(store, created) == StockRejected(
        order_id=created.order_id, user_id=BUYER, excluded=[]
    )
    assert store.orders[created.order_id] is ReservationStatus.REJECTED


def test_a_quantity_beyond_the_contracts_bound_never_reaches_a_reservation() -> None:
    """It would not fit the stock column: the event is refused when read (shop_contracts)."""
    with pytest.raises(ValidationError, match="quantity"):
        order_created((1, MAX_QUANTITY + 1))
    with pytest.raises(ValidationError, match="quantity"):
        order_created((1, 2**63))


async def test_a_second_order_created_for_the_same_order_reserves_nothing() -> None:
    store = store_with(p1=5)
    created = order_created((1, 2))
    assert isinstance(await reserve(store, created), StockReserved)
    assert await reserve(store, created) is None
    assert stock_of(store) == {1: 3}


async def test_release_gives_back_exactly_what_was_taken_once() -> None:
    store = store_with(p1=5, p2=1, p3=4)
    created = order_created((3, 2), (2, 3), (1, 1))
    await reserve(store, created)
    assert stock_of(store) == {1: 4, 2: 1, 3: 2}
    released = await release(store, order_failed(created))
    assert released == [Released(1, 1), Released(3, 2)]
    assert store.give_backs == [1, 3]
    assert stock_of(store) == {1: 5, 2: 1, 3: 4}
    assert await release(store, order_failed(created)) == []
    assert stock_of(store) == {1: 5, 2: 1, 3: 4}
    assert store.orders[created.order_id] is ReservationStatus.RELEASED


async def test_release_of_a_rejected_order_gives_nothing_back() -> None:
    store = store_with(p1=0)
    created = order_created((1, 1))
    await reserve(store, created)
    assert await release(store, order_failed(created)) == []
    assert stock_of(store) == {1: 0}
    assert store.orders[created.order_id] is ReservationStatus.REJECTED


async def test_an_order_that_failed_before_its_reservation_is_never_reserved() -> None:
    store = store_with(p1=5)
    created = order_created((1, 2))
    assert await release(store, order_failed(created)) == []
    assert store.orders[created.order_id] is ReservationStatus.RELEASED
    assert await reserve(store, created) is None
    assert stock_of(store) == {1: 5}
    assert store.takes == []


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "new\nline", "esc\x1b[31m", "del\x7f"])
def test_names_with_control_characters_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        refuse_control_characters(name)


@pytest.mark.parametrize("name", ["Kimchi", "제주 감귤 5kg", "café · 100% arabica", "😀"])
def test_ordinary_names_are_kept_as_they_are(name: str) -> None:
    assert refuse_control_characters(name) == name
