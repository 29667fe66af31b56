from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from coupon.adapters.gate import IssuanceGate
from coupon.api.schemas import (
    CouponResponse,
    CreateCouponRequest,
    IssuedCouponResponse,
    IssueRequest,
    UserCouponItem,
    UserCouponsResponse,
)
from coupon.service import catalogue, issuing
from shop_contracts import Problem
from shopkit.http.app import IdPath, UnitsOfWork
from shopkit.http.auth import AdminClaims, OptionalClaims, authorize_user
from shopkit.http.fast import fast

router = APIRouter(tags=["coupons"])


# Dependencies are coroutines: a plain `def` one would cost a worker-thread hop per request.
async def _gate(request: Request) -> IssuanceGate:
    gate: IssuanceGate = request.app.state.gate
    return gate


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json answers a route may give."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses
    }


Gate = Annotated[IssuanceGate, Depends(_gate)]
Token = OptionalClaims


@router.post(
    "/coupons", status_code=201, response_model=CouponResponse, responses=_problems(401, 403, 422)
)
async def create_coupon(
    _: AdminClaims, body: CreateCouponRequest, units: UnitsOfWork, gate: Gate
) -> CouponResponse:
    coupon = await catalogue.create_coupon(
        units,
        gate,
        name=body.name,
        terms=body.terms(),
        total_quantity=body.total_quantity,
        valid_days=body.valid_days,
    )
    return CouponResponse.of(coupon)


@router.get("/coupons/{coupon_id}", response_model=CouponResponse, responses=_problems(404, 422))
async def get_coupon(coupon_id: IdPath, units: UnitsOfWork) -> CouponResponse:
    return CouponResponse.of(await catalogue.coupon(units, coupon_id))


@router.post(
    "/coupons/{coupon_id}/issue",
    status_code=201,
    response_model=IssuedCouponResponse,
    responses=_problems(401, 403, 404, 409, 422, 503),
)
@fast
async def issue_coupon(
    request: Request, coupon_id: IdPath, body: IssueRequest, claims: Token
) -> IssuedCouponResponse:
    authorize_user(request, claims, body.user_id)
    # The rush's route takes its parts from the app's state rather than as three more
    # dependencies: FastAPI's per-dependency cost was a seventh of a rejected request.
    state = request.app.state
    user_coupon = await issuing.issue(
        state.runtime.api_unit_of_work, state.gate, state.writer, coupon_id, body.user_id
    )
    return IssuedCouponResponse.of(user_coupon)


@router.get(
    "/users/{user_id}/coupons",
    response_model=UserCouponsResponse,
    responses=_problems(401, 403, 422),
)
async def user_coupons(
    request: Request,
    user_id: IdPath,
    units: UnitsOfWork,
    claims: Token,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 1_000,
) -> UserCouponsResponse:
    authorize_user(request, claims, user_id)
    held = await catalogue.coupons_of(units, user_id, limit)
    now = datetime.now(UTC)
    return UserCouponsResponse(items=[UserCouponItem.of(h, now) for h in held])
