"""What a product may be: a non-blank name, a positive integer price in won, a stock that is
never negative. The bounds keep every value, and every sum of them, far from bigint overflow."""

import unicodedata
from typing import Final

from shop_contracts import ErrorCode
from shopkit.errors import NotFound

MAX_NAME_LENGTH: Final = 200
MIN_PRICE: Final = 1
MAX_PRICE: Final = 100_000_000
MAX_STOCK: Final = 1_000_000_000


def refuse_control_characters(name: str) -> str:
    """Names are shown to people and sent to other systems: no NUL, newline, escape, …"""
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise ValueError("must not contain control characters")
    return name


class ProductNotFound(NotFound):
    """There is no product with this id."""

    code = ErrorCode.PRODUCT_NOT_FOUND

    def __init__(self, product_id: int) -> None:
        super().__init__(self.code, f"Product {product_id} does not exist.")
