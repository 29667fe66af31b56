"""The coupon service's domain errors (rendered as problem+json by the shared API shell)."""

from shop_contracts import ErrorCode
from shopkit.errors import Conflict, NotFound, Unavailable


class CouponNotFound(NotFound):
    def __init__(self, coupon_id: int) -> None:
        super().__init__(ErrorCode.COUPON_NOT_FOUND, f"Coupon {coupon_id} does not exist.")


class CouponSoldOut(Conflict):
    def __init__(self, coupon_id: int) -> None:
        super().__init__(ErrorCode.COUPON_SOLD_OUT, f"Coupon {coupon_id} is sold out.")


class CouponAlreadyIssued(Conflict):
    def __init__(self, coupon_id: int, user_id: int) -> None:
        super().__init__(
            ErrorCode.COUPON_ALREADY_ISSUED,
            f"User {user_id} already holds coupon {coupon_id}.",
        )


class IssuanceUnavailable(Unavailable):
    """Nothing was issued; the same request may be retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Coupons cannot be issued right now ({reason}); please retry.")
