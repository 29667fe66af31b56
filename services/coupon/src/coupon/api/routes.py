from datetime import UTC, datetime
from typing import Annotated

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
from coupon.domain.errors import (
    CouponAlreadyIssued,
    CouponNotFound,
    CouponSoldOut,
    IssuanceUnavailable,
)
from coupon.service import catalogue, issuing
from shopkit.http.answers import raises
from shopkit.http.app import IdPath, UnitsOfWork
from shopkit.http.auth import AdminClaims, OptionalClaims, authorize_user
from shopkit.http.fast import fast

router = APIRouter(tags=["coupons"])


# Dependencies are coroutines: a plain `def` one would cost a worker-thread hop per request.
async def _gate(request: Request) -> IssuanceGate:
    gate: IssuanceGate = request.app.state.gate
    return gate


Gate = Annotated[IssuanceGate, Depends(_gate)]
Token = OptionalClaims


@router.post("/coupons", status_code=201, response_model=CouponResponse)
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


@router.get("/coupons/{coupon_id}", response_model=CouponResponse, responses=raises(CouponNotFound))
async def get_coupon(coupon_id: IdPath, units: UnitsOfWork) -> CouponResponse:
    return CouponResponse.of(await catalogue.coupon(units, coupon_id))


@router.post(
    "/coupons/{coupon_id}/issue",
    status_code=201,
    response_model=IssuedCouponResponse,
    responses=raises(CouponNotFound, CouponSoldOut, CouponAlreadyIssued, IssuanceUnavailable),
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


@router.get("/users/{user_id}/coupons", response_model=UserCouponsResponse)
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
