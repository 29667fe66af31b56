"""The coupon service's domain errors (rendered as problem+json by the shared API shell)."""

from shop_contracts import ErrorCode
from shopkit.errors import Conflict, NotFound, Unavailable


class CouponNotFound(NotFound):
    """There is no coupon with this id."""

    code = ErrorCode.COUPON_NOT_FOUND

    def __init__(self, coupon_id: int) -> None:
        super().__init__(self.code, f"Coupon {coupon_id} does not exist.")


class CouponSoldOut(Conflict):
    """Every copy of the coupon has been issued."""

    code = ErrorCode.COUPON_SOLD_OUT

    def __init__(self, coupon_id: int) -> None:
        super().__init__(self.code, f"Coupon {coupon_id} is sold out.")


class CouponAlreadyIssued(Conflict):
    """The user holds a copy of this coupon already."""

    code = ErrorCode.COUPON_ALREADY_ISSUED

    def __init__(self, coupon_id: int, user_id: int) -> None:
        super().__init__(
            self.code,
            f"User {user_id} already holds coupon {coupon_id}.",
        )


class IssuanceUnavailable(Unavailable):
    """Nothing was issued; the same request may be retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Coupons cannot be issued right now ({reason}); please retry.")
