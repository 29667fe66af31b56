"""A charge, served as a hot route (shopkit.hot): the same request and response models and use
case as routes.charge, without FastAPI's per-request machinery. A charge with an
Idempotency-Key goes on to routes.charge."""

from point.api.schemas import BalanceResponse, ChargeRequest
from point.service import charging
from shopkit.db import autocommit
from shopkit.hot import HotRequest, HotRoute, Reply


async def charge(request: HotRequest) -> Reply | None:
    if request.header(b"idempotency-key") is not None:
        return None
    body = request.json(ChargeRequest)
    if body is None:
        return None
    state = request.state
    (user_id,) = request.ids
    request.authorize(user_id)
    async with state.runtime.api_sessions() as db:
        await autocommit(db)  # the charge is one statement: its own transaction
        balance = await charging.charge(db, user_id, body.amount)
    return Reply.model(200, BalanceResponse(user_id=user_id, balance=balance))


HOT_ROUTES = (HotRoute("POST", "/points/{user_id}/charge", charge),)
