"""A charge, served as a hot route (shopkit.http.fast): the same request and response models and use
case as routes.charge, without FastAPI's per-request machinery. A charge with an
Idempotency-Key goes on to routes.charge."""

from point.api.schemas import BalanceResponse, ChargeRequest
from point.service import charging
from shopkit.http.fast import HotRequest, HotRoute, Reply


async def charge(request: HotRequest) -> Reply | None:
    if request.header(b"idempotency-key") is not None:
        return None
    body = request.json(ChargeRequest)
    if body is None:
        return None
    (user_id,) = request.ids
    request.authorize(user_id)
    balance = await charging.charge_now(request.state.runtime.api_engine, user_id, body.amount)
    return Reply.model(200, BalanceResponse(user_id=user_id, balance=balance))


HOT_ROUTES = (HotRoute("POST", "/points/{user_id}/charge", charge),)
