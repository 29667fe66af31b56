from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Request, Response

from ranking.api.schemas import SnapshotRequest, TopProductsResponse
from ranking.config import Settings
from ranking.domain.ranking import Ranking
from ranking.service import snapshots
from shopkit.http.app import UnitsOfWork
from shopkit.http.auth import AdminClaims
from shopkit.http.fast import fast

router = APIRouter(tags=["rankings"])


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


class _RenderedOnce:
    """The last answer, with the snapshot (the very object LatestRanking keeps) and window it
    shows: a snapshot never changes, so the next reads of it send the same bytes instead of
    validating and serializing the response model again."""

    def __init__(self) -> None:
        self._last: tuple[Ranking | None, int, bytes] | None = None

    def body(self, ranking: Ranking | None, window_days: int) -> bytes:
        last = self._last
        if last is None or last[0] is not ranking or last[1] != window_days:
            body = TopProductsResponse.of(ranking, window_days).model_dump_json().encode()
            last = self._last = (ranking, window_days, body)
        return last[2]


_rendered = _RenderedOnce()


@router.get("/rankings/top-products", response_model=TopProductsResponse)
@fast
async def top_products(request: Request) -> Response:
    """The latest snapshot of the daily job (as_of null and no items before the first run)."""
    latest: snapshots.LatestRanking = request.app.state.latest_ranking
    ranking = await latest.get()
    body = _rendered.body(ranking, _settings(request).window_days)
    return Response(body, media_type="application/json")


@router.post("/rankings/snapshot", status_code=201, response_model=TopProductsResponse)
async def take_snapshot(
    request: Request,
    units: UnitsOfWork,
    _: AdminClaims,
    body: Annotated[SnapshotRequest | None, Body()] = None,
) -> TopProductsResponse:
    """Run the daily job now (operators, tests); `as_of` computes it as if run at that time."""
    as_of = body.as_of if body and body.as_of else datetime.now(UTC)
    ranking = await snapshots.take_snapshot(units, _settings(request), as_of)
    return TopProductsResponse.of(ranking, ranking.days.days)
