from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ranking.api.schemas import SnapshotRequest, TopProductsResponse
from ranking.config import Settings
from ranking.service import snapshots
from shopkit.http.app import session
from shopkit.http.auth import AdminClaims

router = APIRouter(tags=["rankings"])
Db = Annotated[AsyncSession, Depends(session)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.get("/rankings/top-products", response_model=TopProductsResponse)
async def top_products(request: Request) -> TopProductsResponse:
    """The latest snapshot of the daily job (as_of null and no items before the first run).
    Served by api.hot.top_products; here for the OpenAPI document."""
    latest: snapshots.LatestRanking = request.app.state.latest_ranking
    ranking = await latest.get()
    return TopProductsResponse.of(ranking, _settings(request).window_days)


@router.post("/rankings/snapshot", status_code=201, response_model=TopProductsResponse)
async def take_snapshot(
    request: Request,
    db: Db,
    _: AdminClaims,
    body: Annotated[SnapshotRequest | None, Body()] = None,
) -> TopProductsResponse:
    """Run the daily job now (operators, tests); `as_of` computes it as if run at that time."""
    as_of = body.as_of if body and body.as_of else datetime.now(UTC)
    async with db.begin():
        ranking = await snapshots.take_snapshot(db, _settings(request), as_of)
    return TopProductsResponse.of(ranking, ranking.days.days)
