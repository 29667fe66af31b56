"""The issue request of a rush, served as a hot route (shopkit.http.fast): the same request and
response models and use case as routes.issue_coupon, without FastAPI's per-request machinery."""

from coupon.api.schemas import IssuedCouponResponse, IssueRequest
from coupon.service import issuing
from shopkit.http.fast import HotRequest, HotRoute, Reply


async def issue_coupon(request: HotRequest) -> Reply | None:
    body = request.json(IssueRequest)
    if body is None:
        return None
    state = request.state
    request.authorize(body.user_id)
    (coupon_id,) = request.ids
    user_coupon = await issuing.issue(
        state.runtime.api_sessions, state.gate, state.writer, coupon_id, body.user_id
    )
    return Reply.model(201, IssuedCouponResponse.of(user_coupon))


HOT_ROUTES = (HotRoute("POST", "/coupons/{coupon_id}/issue", issue_coupon),)
