"""Coupon definitions and a user's coupons: use cases behind the HTTP API, one unit of work each
(shopkit.database.uow)."""

from coupon.adapters.gate import GateUnavailable, IssuanceGate
from coupon.adapters.repository import CouponRepository
from coupon.domain.coupons import CouponDefinition, CouponTerms, HeldCoupon
from coupon.domain.errors import CouponNotFound
from shopkit.database.uow import UnitOfWorkFactory
from shopkit.ops.logging import get_logger

log = get_logger(__name__)


async def create_coupon(
    units: UnitOfWorkFactory,
    gate: IssuanceGate,
    *,
    name: str,
    terms: CouponTerms,
    total_quantity: int,
    valid_days: int,
) -> CouponDefinition:
    async with units() as uow:
        coupon = await CouponRepository(uow.session).add_coupon(
            name=name, terms=terms, total_quantity=total_quantity, valid_days=valid_days
        )
        await uow.commit()
    try:
        # Open the gate now rather than on the rush's first request; if Redis is down, the
        # first issue request rebuilds it from the database instead.
        await gate.install(coupon.id, coupon.total_quantity, [])
    except GateUnavailable as exc:
        log.warning("coupon_gate_not_installed", coupon_id=coupon.id, error=str(exc))
    log.info("coupon_created", coupon_id=coupon.id, total_quantity=total_quantity)
    return coupon


async def coupon(units: UnitOfWorkFactory, coupon_id: int) -> CouponDefinition:
    async with units() as uow:
        found = await CouponRepository(await uow.read_only()).coupon(coupon_id)
    if found is None:
        raise CouponNotFound(coupon_id)
    return found


async def coupons_of(units: UnitOfWorkFactory, user_id: int, limit: int) -> list[HeldCoupon]:
    async with units() as uow:
        return await CouponRepository(await uow.read_only()).held_coupons(user_id, limit)
