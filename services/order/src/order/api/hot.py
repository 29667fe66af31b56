"""Placing an order, served as a hot route (shopkit.http.fast): the same request and response models
and use case as routes.place_order, without FastAPI's per-request machinery. An order with a
`Prefer` or `Idempotency-Key` header goes on to routes.place_order."""

from datetime import timedelta

from order.api.schemas import OrderView, PlaceOrderRequest
from order.service import ordering
from shopkit.http.fast import HotRequest, HotRoute, Reply


async def place_order(request: HotRequest) -> Reply | None:
    if request.header(b"prefer") is not None or request.header(b"idempotency-key") is not None:
        return None
    body = request.json(PlaceOrderRequest)
    if body is None:
        return None
    state = request.state
    request.authorize(body.user_id)
    placed = await ordering.place_order(
        state.runtime.unit_of_work(),
        body.command(),
        saga_timeout=timedelta(seconds=state.settings.saga_timeout_s),
    )
    order = placed.order
    return Reply.model(
        201 if order.is_final else 202,
        OrderView.of(order),
        headers=((b"location", f"/orders/{order.order_id}".encode()),),
    )


HOT_ROUTES = (HotRoute("POST", "/orders", place_order),)
