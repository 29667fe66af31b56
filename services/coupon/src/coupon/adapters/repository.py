"""All of the coupon service's SQL. Every contended change is one conditional statement."""

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, cast
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from coupon.adapters.tables import Coupon, OrderPricing, UserCoupon
from coupon.domain.coupons import (
    CouponDefinition,
    CouponTerms,
    DiscountType,
    HeldCoupon,
    IssuedCoupon,
    Price,
    PricingStatus,
)
from shopkit.database.engine import Prepared


class Refusal(StrEnum):
    SOLD_OUT = "SOLD_OUT"
    ALREADY_HELD = "ALREADY_HELD"


def _gate_lock(coupon_id: int) -> ColumnElement[int]:
    """The advisory lock key of one coupon's gate, namespaced away from other advisory locks."""
    return func.hashtextextended(f"coupon-gate:{coupon_id}", 0)


_TAKE_COPIES = text(
    """
WITH asked AS (
    SELECT user_id, min(ord) AS ord, min(issued_at) AS issued_at
    FROM unnest(CAST(:user_ids AS bigint[]), CAST(:issued_ats AS timestamptz[]))
         WITH ORDINALITY AS a(user_id, issued_at, ord)
    GROUP BY user_id
), fresh AS (
    SELECT asked.* FROM asked
    WHERE NOT EXISTS (
        SELECT 1 FROM user_coupons held
        WHERE held.coupon_id = :coupon_id AND held.user_id = asked.user_id
    )
), coupon AS (
    SELECT id, valid_days, greatest(total_quantity - issued_quantity, 0) AS remaining
    FROM coupons WHERE id = :coupon_id
), winners AS (
    SELECT coupon.id AS coupon_id, coupon.valid_days, fresh.user_id, fresh.issued_at
    FROM fresh CROSS JOIN coupon
    ORDER BY fresh.ord
    LIMIT (SELECT remaining FROM coupon)
), issued AS (
    INSERT INTO user_coupons (coupon_id, user_id, issued_at, expires_at)
    SELECT coupon_id, user_id, issued_at, issued_at + make_interval(days => valid_days)
    FROM winners
    ON CONFLICT (coupon_id, user_id) DO NOTHING
    RETURNING id, user_id, issued_at, expires_at
), counted AS (
    UPDATE coupons SET issued_quantity = issued_quantity + (SELECT count(*) FROM issued)
    WHERE id = :coupon_id
)
SELECT id, user_id, issued_at, expires_at FROM issued
UNION ALL
SELECT NULL, user_id, NULL, NULL FROM asked WHERE user_id NOT IN (SELECT user_id FROM fresh)
"""
)
"""Issues a batch (see take_copies): returns the copies issued, and the users who already held
one (id NULL); every other user asked was too late (sold out)."""


_pricings = cast(Table, OrderPricing.__table__)
_CLAIM_PRICING: Final = Prepared(
    insert(_pricings)
    .values({c: bindparam(c) for c in ("order_id", "user_id", "user_coupon_id", "status")})
    .on_conflict_do_nothing(index_elements=[_pricings.c.order_id])
    .returning(_pricings.c.order_id)
)
_FINISH_PRICING: Final = Prepared(
    update(_pricings)
    .where(_pricings.c.order_id == bindparam("b_order_id"))
    .values({c: bindparam(c) for c in ("status", "subtotal", "discount", "total", "detail")})
)


class CouponRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- coupon definitions -------------------------------------------------------------

    async def add_coupon(
        self,
        *,
        name: str,
        terms: CouponTerms,
        total_quantity: int,
        valid_days: int,
    ) -> CouponDefinition:
        stmt = (
            insert(Coupon)
            .values(
                name=name,
                discount_type=terms.discount_type.value,
                discount_value=terms.discount_value,
                min_order_amount=terms.min_order_amount,
                total_quantity=total_quantity,
                issued_quantity=0,
                valid_days=valid_days,
            )
            .returning(*_DEFINITION)
        )
        return _to_definition((await self.session.execute(stmt)).one())

    async def coupon(self, coupon_id: int) -> CouponDefinition | None:
        stmt = select(*_DEFINITION).where(Coupon.id == coupon_id)
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else _to_definition(row)

    # --- issuance -----------------------------------------------------------------------

    async def take_copies(
        self, coupon_id: int, asked: Sequence[tuple[int, datetime]]
    ) -> dict[int, IssuedCoupon | Refusal]:
        """Many users' issuances of one coupon in one transaction (the batch of a rush's
        winners): each user gets a copy while copies are left, in the order asked, unless they
        hold one already. The answer per user; a user asking twice gets one copy.

        The coupon's row is locked first, in a statement of its own, so that the issuing
        statement's snapshot (taken after the lock is granted) sees every copy committed
        before: counted copies and inserted rows always agree."""
        await self.session.execute(
            select(Coupon.id).where(Coupon.id == coupon_id).with_for_update()
        )
        rows = (
            await self.session.execute(
                _TAKE_COPIES,
                {
                    "coupon_id": coupon_id,
                    "user_ids": [user_id for user_id, _ in asked],
                    "issued_ats": [issued_at for _, issued_at in asked],
                },
            )
        ).all()
        answers: dict[int, IssuedCoupon | Refusal] = {
            user_id: Refusal.SOLD_OUT for user_id, _ in asked
        }
        for row in rows:
            if row.id is None:
                answers[row.user_id] = Refusal.ALREADY_HELD
            else:
                answers[row.user_id] = IssuedCoupon(
                    user_coupon_id=row.id,
                    coupon_id=coupon_id,
                    user_id=row.user_id,
                    issued_at=row.issued_at,
                    expires_at=row.expires_at,
                )
        return answers

    async def lock_for_gate_rebuild(self, coupon_id: int) -> None:
        """Rebuilds of one coupon's gate take turns, across every process of the service."""
        await self.session.execute(select(func.pg_advisory_xact_lock(_gate_lock(coupon_id))))

    async def open_coupon_ids(self) -> list[int]:
        """Coupons with copies left: those whose gate still admits (or should)."""
        stmt = select(Coupon.id).where(Coupon.issued_quantity < Coupon.total_quantity)
        return list((await self.session.scalars(stmt.order_by(Coupon.id))).all())

    async def holders(self, coupon_id: int) -> list[int]:
        stmt = select(UserCoupon.user_id).where(UserCoupon.coupon_id == coupon_id)
        return list((await self.session.scalars(stmt)).all())

    # --- a user's coupons ---------------------------------------------------------------

    @staticmethod
    def _held() -> Select[UserCoupon, Coupon]:
        return select(UserCoupon, Coupon).join(Coupon, Coupon.id == UserCoupon.coupon_id)

    async def held_coupons(self, user_id: int, limit: int) -> list[HeldCoupon]:
        stmt = (
            self._held()
            .where(UserCoupon.user_id == user_id)
            .order_by(UserCoupon.id.desc())
            .limit(limit)
        )
        return [_to_held(row) for row in (await self.session.execute(stmt)).all()]

    async def held_coupon(self, user_coupon_id: int) -> HeldCoupon | None:
        stmt = self._held().where(UserCoupon.id == user_coupon_id)
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else _to_held(row)

    async def mark_used(
        self, user_coupon_id: int, user_id: int, order_id: UUID, now: datetime
    ) -> bool:
        """Takes the coupon for this order if no order holds it; False when one already does."""
        stmt = (
            update(UserCoupon)
            .where(
                UserCoupon.id == user_coupon_id,
                UserCoupon.user_id == user_id,
                UserCoupon.used_order_id.is_(None),
            )
            .values(used_order_id=order_id, used_at=now)
            .returning(UserCoupon.id)
        )
        return await self.session.scalar(stmt) is not None

    async def release_coupon_of(self, order_id: UUID) -> int | None:
        """Gives back the coupon this order holds, if any; its id when this call did it."""
        stmt = (
            update(UserCoupon)
            .where(UserCoupon.used_order_id == order_id)
            .values(used_order_id=None, used_at=None)
            .returning(UserCoupon.id)
        )
        return await self.session.scalar(stmt)

    # --- the saga's memory per order ----------------------------------------------------

    async def claim_pricing(self, order_id: UUID, user_id: int, user_coupon_id: int | None) -> bool:
        """Starts pricing this order; False when it was priced or closed before."""
        claimed = await _CLAIM_PRICING.fetchrow(
            self.session,
            order_id=order_id,
            user_id=user_id,
            user_coupon_id=user_coupon_id,
            status=PricingStatus.PRICING.value,
        )
        return claimed is not None

    async def finish_pricing(
        self,
        order_id: UUID,
        status: PricingStatus,
        price: Price | None = None,
        detail: str | None = None,
    ) -> None:
        await _FINISH_PRICING.fetch(
            self.session,
            b_order_id=order_id,
            status=status.value,
            subtotal=None if price is None else price.subtotal,
            discount=None if price is None else price.discount,
            total=None if price is None else price.total,
            detail=detail,
        )

    async def close_pricing(self, order_id: UUID, user_id: int) -> None:
        """Marks the order closed, whether or not it was priced before."""
        stmt = insert(OrderPricing).values(
            order_id=order_id, user_id=user_id, status=PricingStatus.CLOSED.value
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[OrderPricing.order_id],
                set_={"status": PricingStatus.CLOSED.value, "updated_at": func.now()},
            )
        )


def _to_held(row: Row[UserCoupon, Coupon]) -> HeldCoupon:
    user_coupon, coupon = row
    return HeldCoupon(
        user_coupon_id=user_coupon.id,
        coupon_id=coupon.id,
        user_id=user_coupon.user_id,
        name=coupon.name,
        terms=terms_of(coupon),
        issued_at=user_coupon.issued_at,
        expires_at=user_coupon.expires_at,
        used_order_id=user_coupon.used_order_id,
    )


_DEFINITION: Final = (
    Coupon.id,
    Coupon.name,
    Coupon.discount_type,
    Coupon.discount_value,
    Coupon.min_order_amount,
    Coupon.total_quantity,
    Coupon.issued_quantity,
    Coupon.valid_days,
)
"""The columns of a CouponDefinition (see _to_definition)."""


def _to_definition(row: Row[*tuple[Any, ...]]) -> CouponDefinition:
    return CouponDefinition(
        id=row.id,
        name=row.name,
        terms=terms_of(row),
        total_quantity=row.total_quantity,
        issued_quantity=row.issued_quantity,
        valid_days=row.valid_days,
    )


def terms_of(coupon: Coupon | Row[*tuple[Any, ...]]) -> CouponTerms:
    return CouponTerms(
        discount_type=DiscountType(coupon.discount_type),
        discount_value=coupon.discount_value,
        min_order_amount=coupon.min_order_amount,
    )
