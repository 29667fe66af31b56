from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict

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


class SnapshotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: AwareDatetime | None = None
