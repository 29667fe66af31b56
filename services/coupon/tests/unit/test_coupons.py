"""The coupon rules, without any I/O."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from coupon.domain.coupons import (
    CouponStatus,
    CouponTerms,
    DiscountType,
    HeldCoupon,
    discount_value_problem,
    price,
    status_of,
    subtotal_of,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def fixed(value: int, min_order_amount: int = 0) -> CouponTerms:
    return CouponTerms(DiscountType.FIXED, value, min_order_amount)


def percent(value: int, min_order_amount: int = 0) -> CouponTerms:
    return CouponTerms(DiscountType.PERCENT, value, min_order_amount)


def held(
    terms: CouponTerms | None = None,
    *,
    user_id: int = 7,
    expires_at: datetime = NOW + timedelta(days=1),
    used_order_id: uuid.UUID | None = None,
) -> HeldCoupon:
    return HeldCoupon(
        user_coupon_id=1,
        coupon_id=2,
        user_id=user_id,
        name="coupon",
        terms=terms or fixed(1_000),
        issued_at=expires_at - timedelta(days=7),
        expires_at=expires_at,
        used_order_id=used_order_id,
    )


def test_fixed_discount_takes_its_value_off() -> None:
    priced = price(10_000, fixed(3_000))
    assert (priced.subtotal, priced.discount, priced.total) == (10_000, 3_000, 7_000)


def test_fixed_discount_never_exceeds_the_subtotal() -> None:
    priced = price(2_500, fixed(3_000))
    assert (priced.discount, priced.total) == (2_500, 0)


def test_percent_discount_is_that_share_of_the_subtotal() -> None:
    priced = price(20_000, percent(15))
    assert (priced.subtotal, priced.discount, priced.total) == (20_000, 3_000, 17_000)


@pytest.mark.parametrize(
    ("subtotal", "value", "discount"),
    [
        (9_999, 10, 999),  # 999.9 rounds down
        (12_345, 15, 1_851),  # 1,851.75 rounds down
        (1, 50, 0),  # half a won is no won
        (199, 1, 1),  # 1.99 rounds down
        (100, 33, 33),
        (3, 99, 2),  # 2.97 rounds down
    ],
)
def test_percent_discount_rounds_down_to_whole_won(
    subtotal: int, value: int, discount: int
) -> None:
    assert percent(value).discount_on(subtotal) == discount
    assert price(subtotal, percent(value)).total == subtotal - discount


def test_hundred_percent_takes_the_whole_subtotal() -> None:
    assert price(54_321, percent(100)).total == 0


def test_percent_of_a_huge_subtotal_is_exact() -> None:
    subtotal = 2**62 + 7  # float arithmetic would be off by hundreds of won
    assert percent(10).discount_on(subtotal) == subtotal * 10 // 100


def test_no_coupon_no_discount() -> None:
    priced = price(8_000)
    assert (priced.subtotal, priced.discount, priced.total) == (8_000, 0, 8_000)


def test_subtotal_is_quantity_times_unit_price_summed() -> None:
    assert subtotal_of([(2, 1_500), (1, 9_900), (3, 0)]) == 12_900
    assert subtotal_of([]) == 0


@pytest.mark.parametrize(
    ("discount_type", "value", "valid"),
    [
        (DiscountType.PERCENT, 0, False),
        (DiscountType.PERCENT, 1, True),
        (DiscountType.PERCENT, 100, True),
        (DiscountType.PERCENT, 101, False),
        (DiscountType.FIXED, 0, False),
        (DiscountType.FIXED, 1, True),
        (DiscountType.FIXED, 10_000_000, True),
    ],
)
def test_discount_value_ranges(discount_type: DiscountType, value: int, valid: bool) -> None:
    assert (discount_value_problem(discount_type, value) is None) is valid


def test_unused_coupon_is_available_until_it_expires() -> None:
    expires_at = NOW + timedelta(seconds=1)
    assert status_of(None, expires_at, NOW) is CouponStatus.AVAILABLE
    assert status_of(None, expires_at, expires_at) is CouponStatus.AVAILABLE
    assert status_of(None, expires_at, expires_at + timedelta(microseconds=1)) is (
        CouponStatus.EXPIRED
    )


def test_used_coupon_stays_used_after_its_expiry() -> None:
    assert status_of(uuid.uuid4(), NOW - timedelta(days=1), NOW) is CouponStatus.USED


def test_available_coupon_pays_for_its_owners_order() -> None:
    assert held(fixed(1_000, min_order_amount=5_000)).refusal(7, 5_000, NOW) is None


def test_coupon_below_its_minimum_order_amount_is_refused() -> None:
    refusal = held(fixed(1_000, min_order_amount=5_000)).refusal(7, 4_999, NOW)
    assert refusal is not None
    assert "minimum order amount" in refusal


def test_another_users_coupon_is_refused() -> None:
    refusal = held(user_id=8).refusal(7, 10_000, NOW)
    assert refusal is not None
    assert "another user" in refusal


def test_expired_coupon_is_refused() -> None:
    refusal = held(expires_at=NOW - timedelta(seconds=1)).refusal(7, 10_000, NOW)
    assert refusal is not None
    assert "expired" in refusal


def test_used_coupon_is_refused() -> None:
    refusal = held(used_order_id=uuid.uuid4()).refusal(7, 10_000, NOW)
    assert refusal is not None
    assert "already used" in refusal
