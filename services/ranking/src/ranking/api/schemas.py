from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict

from ranking.domain.ranking import Ranking


class RankedProductOut(BaseModel):
    rank: int
    product_id: int
    name: str
    price: int
    sold_quantity: int


class TopProductsResponse(BaseModel):
    window_days: int
    as_of: datetime | None
    items: list[RankedProductOut]

    @classmethod
    def of(cls, ranking: Ranking | None, window_days: int) -> "TopProductsResponse":
        if ranking is None:
            return cls(window_days=window_days, as_of=None, items=[])
        return cls(
            window_days=ranking.days.days,
            as_of=ranking.as_of,
            items=[RankedProductOut.model_validate(i, from_attributes=True) for i in ranking.items],
        )


def _written_as_text(value: Any) -> Any:
    """A time is the ISO-8601 text the schema documents (`date-time`), never a number of
    seconds, which pydantic would take too."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 time with its offset")
    return value


class SnapshotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: Annotated[AwareDatetime, BeforeValidator(_written_as_text)] | None = None
