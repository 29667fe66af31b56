from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response

from order.api.deps import AppSettings, Completions, WaitPreference
from order.api.schemas import OrderList, OrderView, PlaceOrderRequest
from order.domain.order import OrderNotFound
from order.service import ordering
from shopkit.http.answers import raises
from shopkit.http.app import IdPath, UnitsOfWork
from shopkit.http.auth import OptionalClaims, authorize_user
from shopkit.http.fast import fast
from shopkit.http.idempotency import IdempotencyKeyHeader

router = APIRouter(tags=["orders"])

_FINAL = "The order reached PAID or FAILED while the request waited (`Prefer: wait=N`)."
_PENDING = "The order is PENDING: the saga goes on; GET /orders/{order_id} tells how it ends."


@router.post(
    "/orders",
    status_code=202,
    response_model=OrderView,
    responses={
        201: {"model": OrderView, "description": _FINAL},
        202: {"description": _PENDING},
        # a retry whose Idempotency-Key outlived the order it made: never a second order
        **raises(OrderNotFound),
    },
)
@fast
async def place_order(
    request: Request,
    response: Response,
    body: PlaceOrderRequest,
    units: UnitsOfWork,
    claims: OptionalClaims,
    config: AppSettings,
    completions: Completions,
    wait_s: WaitPreference,
    idempotency_key: IdempotencyKeyHeader = None,
) -> OrderView:
    """Places an order; the saga (stock, coupon, payment) runs asynchronously."""
    authorize_user(request, claims, body.user_id)
    placed = await ordering.place_order(
        units,
        body.command(),
        saga_timeout=timedelta(seconds=config.saga_timeout_s),
        idempotency_key=idempotency_key,
    )
    order = placed.order
    if wait_s:
        order = await ordering.wait_until_final(units, completions, order.order_id, wait_s)
    response.status_code = 201 if order.is_final else 202
    response.headers["Location"] = f"/orders/{order.order_id}"
    if placed.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if wait_s is not None:
        response.headers["Preference-Applied"] = f"wait={wait_s:g}"
    return OrderView.of(order)


@router.get(
    "/orders/{order_id}",
    response_model=OrderView,
    responses=raises(OrderNotFound),
)
async def get_order(
    request: Request, order_id: UUID, units: UnitsOfWork, claims: OptionalClaims
) -> OrderView:
    order = await ordering.get_order(units, order_id)
    authorize_user(request, claims, order.user_id)
    return OrderView.of(order)


@router.get("/users/{user_id}/orders", response_model=OrderList)
async def orders_of_user(
    request: Request,
    user_id: IdPath,
    units: UnitsOfWork,
    claims: OptionalClaims,
    limit: Annotated[
        int, Query(ge=1, le=1_000, description="At most this many, newest first.")
    ] = 100,
) -> OrderList:
    authorize_user(request, claims, user_id)
    orders = await ordering.orders_of_user(units, user_id, limit)
    return OrderList(items=[OrderView.of(o) for o in orders])
