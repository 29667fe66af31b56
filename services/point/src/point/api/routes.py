from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from point.api.schemas import BalanceResponse, ChargeRequest, HistoryItem, HistoryResponse
from point.service import charging
from shopkit.http import idempotency
from shopkit.http.app import IdPath, session
from shopkit.http.auth import OptionalClaims, authorize_user

router = APIRouter(tags=["points"])
Db = Annotated[AsyncSession, Depends(session)]


@router.post("/points/{user_id}/charge", response_model=BalanceResponse)
async def charge(
    request: Request,
    user_id: IdPath,
    body: ChargeRequest,
    db: Db,
    claims: OptionalClaims,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    authorize_user(request, claims, user_id)

    async def run() -> tuple[int, dict[str, int]]:
        balance = await charging.charge(db, user_id, body.amount)
        return 200, BalanceResponse(user_id=user_id, balance=balance).model_dump()

    if idempotency_key is None:
        balance = await charging.charge_now(
            request.app.state.runtime.api_engine, user_id, body.amount
        )
        return JSONResponse(BalanceResponse(user_id=user_id, balance=balance).model_dump())
    async with db.begin():
        outcome = await idempotency.once(
            db, scope=f"charge:{user_id}", key=idempotency_key, body=body.model_dump(), run=run
        )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


@router.get("/points/{user_id}", response_model=BalanceResponse)
async def balance(
    request: Request, user_id: IdPath, db: Db, claims: OptionalClaims
) -> BalanceResponse:
    authorize_user(request, claims, user_id)
    return BalanceResponse(user_id=user_id, balance=await charging.balance_of(db, user_id))


@router.get("/points/{user_id}/history", response_model=HistoryResponse)
async def history(
    request: Request,
    user_id: IdPath,
    db: Db,
    claims: OptionalClaims,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> HistoryResponse:
    authorize_user(request, claims, user_id)
    entries = await charging.history_of(db, user_id, limit)
    return HistoryResponse(
        items=[HistoryItem.model_validate(e, from_attributes=True) for e in entries]
    )
