"""Points are integer won. A balance never goes below zero and a charge never lifts it past
the cap; payments and refunds are taken at most once per order."""

from datetime import datetime
from enum import StrEnum
from typing import Final, NamedTuple
from uuid import UUID

from shop_contracts import ErrorCode
from shopkit.errors import Conflict

MIN_CHARGE: Final = 1
MAX_CHARGE: Final = 10_000_000
MAX_BALANCE: Final = 100_000_000


class EntryType(StrEnum):
    CHARGE = "CHARGE"
    PAYMENT = "PAYMENT"
    REFUND = "REFUND"


class PaymentStatus(StrEnum):
    PAID = "PAID"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"
    """The order failed before it was paid: a late pay request for it must be declined."""


class Entry(NamedTuple):
    """A line of a user's ledger: what changed their balance, and the balance after it."""

    type: str
    amount: int
    balance_after: int
    order_id: UUID | None
    created_at: datetime


class Refund(NamedTuple):
    """What a refunded payment gives back, to whom."""

    user_id: int
    amount: int


class BalanceLimitExceeded(Conflict):
    """The balance would pass its limit (100,000,000 won)."""

    code = ErrorCode.BALANCE_LIMIT_EXCEEDED

    def __init__(self, balance_limit: int = MAX_BALANCE) -> None:
        super().__init__(
            self.code,
            f"The balance would exceed {balance_limit:,} won.",
        )
