"""The ranking's vocabulary: what one place in the top list is, and a snapshot of the list."""

from dataclasses import dataclass
from datetime import datetime

from ranking.domain.calendar import DayRange


@dataclass(frozen=True)
class ProductSales:
    """Units of one product sold over the ranking's days, with its latest name and price."""

    product_id: int
    name: str
    price: int
    sold_quantity: int


@dataclass(frozen=True)
class RankedProduct:
    rank: int
    product_id: int
    name: str
    price: int
    sold_quantity: int


@dataclass(frozen=True)
class Ranking:
    as_of: datetime
    days: DayRange
    items: list[RankedProduct]


def rank(best_first: list[ProductSales]) -> list[RankedProduct]:
    """Places 1..n for sales already ordered by units desc, product id asc (ties never share)."""
    return [
        RankedProduct(i, s.product_id, s.name, s.price, s.sold_quantity)
        for i, s in enumerate(best_first, start=1)
    ]
