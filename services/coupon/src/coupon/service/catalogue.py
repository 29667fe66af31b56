"""Coupon definitions and a user's coupons: use cases behind the HTTP API, one transaction each."""

from sqlalchemy.ext.asyncio import AsyncSession

from coupon.adapters.gate import GateUnavailable, IssuanceGate
from coupon.adapters.repository import CouponRepository
from coupon.adapters.tables import Coupon
from coupon.domain.coupons import CouponTerms, HeldCoupon
from coupon.domain.errors import CouponNotFound
from shopkit.ops.logging import get_logger

log = get_logger(__name__)


async def create_coupon(
    session: AsyncSession,
    gate: IssuanceGate,
    *,
    name: str,
    terms: CouponTerms,
    total_quantity: int,
    valid_days: int,
) -> Coupon:
    async with session.begin():
        coupon = await CouponRepository(session).add_coupon(
            name=name, terms=terms, total_quantity=total_quantity, valid_days=valid_days
        )
    try:
        # Open the gate now rather than on the rush's first request; if Redis is down, the
        # first issue request rebuilds it from the database instead.
        await gate.install(coupon.id, coupon.total_quantity, [])
    except GateUnavailable as exc:
        log.warning("coupon_gate_not_installed", coupon_id=coupon.id, error=str(exc))
    log.info("coupon_created", coupon_id=coupon.id, total_quantity=total_quantity)
    return coupon


async def coupon(session: AsyncSession, coupon_id: int) -> Coupon:
    async with session.begin():
        found = await CouponRepository(session).coupon(coupon_id)
    if found is None:
        raise CouponNotFound(coupon_id)
    return found


async def coupons_of(session: AsyncSession, user_id: int, limit: int) -> list[HeldCoupon]:
    async with session.begin():
        return await CouponRepository(session).held_coupons(user_id, limit)
