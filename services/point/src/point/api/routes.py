from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from point.api.schemas import BalanceResponse, ChargeRequest, HistoryItem, HistoryResponse
from point.domain.ledger import BalanceLimitExceeded
from point.service import charging
from shopkit.http.answers import raises
from shopkit.http.app import IdPath, UnitsOfWork
from shopkit.http.auth import OptionalClaims, authorize_user
from shopkit.http.fast import fast
from shopkit.http.idempotency import IdempotencyKeyHeader
from shopkit.ops.runtime import Runtime

router = APIRouter(tags=["points"])


@router.post(
    "/points/{user_id}/charge",
    response_model=BalanceResponse,
    responses=raises(BalanceLimitExceeded),
)
@fast
async def charge(
    request: Request,
    user_id: IdPath,
    body: ChargeRequest,
    claims: OptionalClaims,
    idempotency_key: IdempotencyKeyHeader = None,
) -> BalanceResponse | JSONResponse:
    authorize_user(request, claims, user_id)
    # From the app's state, not a dependency: the hot route pays for no dependency per request.
    runtime: Runtime = request.app.state.runtime
    if idempotency_key is None:
        balance = await charging.charge_now(runtime.api_unit_of_work, user_id, body.amount)
        return BalanceResponse(user_id=user_id, balance=balance)
    outcome = await charging.charge_once(
        runtime.api_unit_of_work, user_id, body.amount, idempotency_key
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


@router.get("/points/{user_id}", response_model=BalanceResponse)
async def balance(
    request: Request, user_id: IdPath, units: UnitsOfWork, claims: OptionalClaims
) -> BalanceResponse:
    authorize_user(request, claims, user_id)
    return BalanceResponse(user_id=user_id, balance=await charging.balance_of(units, user_id))


@router.get("/points/{user_id}/history", response_model=HistoryResponse)
async def history(
    request: Request,
    user_id: IdPath,
    units: UnitsOfWork,
    claims: OptionalClaims,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1_000,
) -> HistoryResponse:
    authorize_user(request, claims, user_id)
    entries = await charging.history_of(units, user_id, limit)
    return HistoryResponse(
        items=[HistoryItem.model_validate(e, from_attributes=True) for e in entries]
    )
