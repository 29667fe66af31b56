from ranking.stream.tally import Sale, count, is_copy, parse_tally_key, sales_of, tally_key
from shop_contracts import PaidLine


def line(product_id: int, quantity: int, name: str = "tea", price: int = 1_000) -> PaidLine:
    return PaidLine(product_id=product_id, name=name, quantity=quantity, unit_price=price)


def test_a_product_listed_twice_in_an_order_sells_the_sum() -> None:
    assert sales_of([line(1, 2), line(2, 1), line(1, 3)]) == [
        Sale(1, "tea", 1_000, 5),
        Sale(2, "tea", 1_000, 1),
    ]


def test_counting_adds_and_remembers_the_offset() -> None:
    first = count(None, Sale(1, "tea", 1_000, 2), offset=10, sold_at=100.0)
    assert first == {"qty": 2, "hw": 10, "name": "tea", "price": 1_000, "at": 100.0}
    second = count(first, Sale(1, "tea", 1_000, 3), offset=12, sold_at=101.0)
    assert second is not None
    assert (second["qty"], second["hw"]) == (5, 12)


def test_an_event_replayed_after_a_crash_is_not_counted_again() -> None:
    tally = count(None, Sale(1, "tea", 1_000, 2), offset=10, sold_at=100.0)
    assert count(tally, Sale(1, "tea", 1_000, 2), offset=10, sold_at=100.0) is None
    assert count(tally, Sale(1, "tea", 1_000, 2), offset=9, sold_at=99.0) is None


def test_name_and_price_are_those_of_the_latest_sale_by_event_time() -> None:
    tally = count(None, Sale(1, "new tea", 1_200, 1), offset=10, sold_at=200.0)
    late_old = count(tally, Sale(1, "old tea", 1_000, 1), offset=11, sold_at=100.0)
    assert late_old is not None
    assert (late_old["qty"], late_old["name"], late_old["price"], late_old["at"]) == (
        2,
        "new tea",
        1_200,
        200.0,
    )


def test_a_copy_is_an_event_id_seen_at_another_offset() -> None:
    assert not is_copy(None, 5)
    assert not is_copy(5, 5)  # the same record again: a replay, handled by the offsets
    assert is_copy(5, 9)


def test_tally_keys_round_trip() -> None:
    assert parse_tally_key(tally_key(2**62, 7)) == (2**62, 7)
