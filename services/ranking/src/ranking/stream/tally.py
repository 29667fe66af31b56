"""How the stream counts, free of Faust so it can be tested on its own.

Kafka and Faust give at-least-once processing: after a crash, events after the last committed
offset are processed again, on top of a table restored from its changelog. Every count is
therefore kept per (product, source partition) together with the offset of the last event
applied to it (`hw`), in one table value, so the count and its high-water mark are written in
one changelog record. A replayed event finds `offset <= hw` and changes nothing; events of one
source partition arrive in offset order, so that test is exact.

An event published twice (the outbox is at-least-once too) has one event id but two offsets:
the first offset an event id was seen at is remembered, and a copy at any other offset is
dropped. Seeing the *same* offset again is a replay, handled by `hw` as above.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypedDict

from shop_contracts import PaidLine


class Tally(TypedDict):
    """A table value: units of one product from one source partition on one business day."""

    qty: int
    hw: int  # offset of the last event counted in
    name: str  # name and price as of the latest sale (by the event's own time)
    price: int
    at: float  # that sale's time, epoch seconds


@dataclass(frozen=True)
class Sale:
    product_id: int
    name: str
    unit_price: int
    quantity: int


def sales_of(lines: Iterable[PaidLine]) -> list[Sale]:
    """One sale per product (an order listing a product twice sells the sum)."""
    by_product: dict[int, Sale] = {}
    for line in lines:
        before = by_product.get(line.product_id)
        quantity = line.quantity + (before.quantity if before else 0)
        by_product[line.product_id] = Sale(line.product_id, line.name, line.unit_price, quantity)
    return list(by_product.values())


def tally_key(product_id: int, partition: int) -> str:
    return f"{product_id}:{partition}"


def parse_tally_key(key: str) -> tuple[int, int]:
    product_id, partition = key.split(":")
    return int(product_id), int(partition)


def is_copy(first_seen_at: int | None, offset: int) -> bool:
    """True for another copy of an event already seen at a different offset."""
    return first_seen_at is not None and first_seen_at != offset


def count(tally: Tally | None, sale: Sale, offset: int, sold_at: float) -> Tally | None:
    """The tally with `sale` added, or None when the event at `offset` is already in it."""
    if tally is None:
        return Tally(
            qty=sale.quantity, hw=offset, name=sale.name, price=sale.unit_price, at=sold_at
        )
    if offset <= tally["hw"]:
        return None
    newer = sold_at >= tally["at"]
    return Tally(
        qty=tally["qty"] + sale.quantity,
        hw=offset,
        name=sale.name if newer else tally["name"],
        price=sale.unit_price if newer else tally["price"],
        at=max(sold_at, tally["at"]),
    )
