from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from point.domain.ledger import MAX_CHARGE, MIN_CHARGE
from shopkit.http.numbers import Integral


class ChargeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Annotated[int, Field(strict=True, ge=MIN_CHARGE, le=MAX_CHARGE), Integral]


class BalanceResponse(BaseModel):
    user_id: int
    balance: int


class HistoryItem(BaseModel):
    type: str
    amount: int
    balance_after: int
    order_id: UUID | None
    created_at: datetime


class HistoryResponse(BaseModel):
    items: list[HistoryItem]
