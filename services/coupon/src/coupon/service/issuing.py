"""First-come-first-served issuance: the Redis gate admits, PostgreSQL records.

1. The gate's Lua script answers ALREADY_ISSUED or SOLD_OUT on its own — most of a rush ends
   there and never touches the database — or admits the user.
2. An admitted user's copy is written together with those of the other users admitted
   meanwhile, one transaction per batch (service/batching.py): the copies left are counted on
   the coupon's row under its lock, and inserted under `UNIQUE(coupon_id, user_id)`.
   The database is the truth: whatever the gate said, it never issues more than the total or
   twice to one user.
3. If that write fails, the admission is taken back, so the user can retry.

A gate that Redis lost (flush, restart, eviction) refuses to admit anyone until it is rebuilt
from the database. Rebuilds of a coupon take turns under its advisory lock and install the gate
only if no other rebuild did first; issuances that commit meanwhile are confirmed in it after the
fact (see `rebuild_gate`), so the gate ends up agreeing with the database.
"""

import asyncio
from datetime import UTC, datetime
from typing import Final

from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from coupon.adapters.gate import Admission, GateUnavailable, Install, IssuanceGate
from coupon.adapters.repository import CouponRepository, Refusal
from coupon.domain.coupons import IssuedCoupon
from coupon.domain.errors import (
    CouponAlreadyIssued,
    CouponNotFound,
    CouponSoldOut,
    IssuanceUnavailable,
)
from coupon.service.batching import IssuanceBatcher
from shopkit.database.uow import UnitOfWorkFactory
from shopkit.ops.logging import get_logger

log = get_logger(__name__)

ISSUE_OUTCOMES = Counter(
    "coupon_issue_requests_total", "Coupon issue requests by outcome", ["outcome"]
)
GATE_REBUILDS = Counter("coupon_gate_rebuilds_total", "Gates rebuilt from PostgreSQL")

MAX_REBUILDS: Final = 3
UNDO_ATTEMPTS: Final = 3


async def issue(
    units: UnitOfWorkFactory,
    gate: IssuanceGate,
    writer: IssuanceBatcher,
    coupon_id: int,
    user_id: int,
    now: datetime | None = None,
) -> IssuedCoupon:
    try:
        admission = await _admit(units, gate, coupon_id, user_id)
    except GateUnavailable as exc:
        log.warning("issuance_gate_unavailable", coupon_id=coupon_id, error=str(exc))
        if exc.maybe_applied:  # one try: Redis just failed to answer, and the user waits
            await _take_back(gate, coupon_id, user_id, attempts=1)
        ISSUE_OUTCOMES.labels("unavailable").inc()
        raise IssuanceUnavailable("the admission gate did not answer") from exc
    except (DBAPIError, PoolTimeout) as exc:  # while rebuilding the gate
        ISSUE_OUTCOMES.labels("unavailable").inc()
        raise IssuanceUnavailable("the database did not answer") from exc
    if admission is Admission.ALREADY_ISSUED:
        ISSUE_OUTCOMES.labels("already_issued").inc()
        raise CouponAlreadyIssued(coupon_id, user_id)
    if admission is Admission.SOLD_OUT:
        ISSUE_OUTCOMES.labels("sold_out").inc()
        raise CouponSoldOut(coupon_id)
    try:
        user_coupon = await _record(writer, gate, coupon_id, user_id, now or datetime.now(UTC))
    except CouponAlreadyIssued:
        ISSUE_OUTCOMES.labels("already_issued").inc()
        raise  # the database says they hold it: their place in the gate is right
    except CouponSoldOut:
        ISSUE_OUTCOMES.labels("sold_out").inc()
        await _take_back(gate, coupon_id, user_id)
        raise
    except (DBAPIError, PoolTimeout) as exc:
        ISSUE_OUTCOMES.labels("unavailable").inc()
        log.warning("issuance_not_recorded", coupon_id=coupon_id, user_id=user_id, error=str(exc))
        await _take_back(gate, coupon_id, user_id)
        raise IssuanceUnavailable("the issuance could not be recorded") from exc
    except BaseException:
        await _take_back(gate, coupon_id, user_id)
        raise
    ISSUE_OUTCOMES.labels("issued").inc()
    return user_coupon


async def _admit(
    units: UnitOfWorkFactory, gate: IssuanceGate, coupon_id: int, user_id: int
) -> Admission:
    for _ in range(MAX_REBUILDS):
        admission = await gate.admit(coupon_id, user_id)
        if admission is not Admission.NEEDS_REBUILD:
            return admission
        await rebuild_gate(units, gate, coupon_id)
    raise GateUnavailable("the gate was lost again after each rebuild", maybe_applied=False)


async def _record(
    writer: IssuanceBatcher,
    gate: IssuanceGate,
    coupon_id: int,
    user_id: int,
    now: datetime,
) -> IssuedCoupon:
    outcome = await writer.take_copy(coupon_id, user_id, now)
    if outcome is Refusal.ALREADY_HELD:
        raise CouponAlreadyIssued(coupon_id, user_id)
    if outcome is Refusal.SOLD_OUT:
        raise CouponSoldOut(coupon_id)
    try:
        # Committed. If the gate that admitted this user was lost and rebuilt meanwhile, the new
        # one may not know them yet (the rebuild read the database before this commit).
        await gate.confirm(coupon_id, [user_id])
    except GateUnavailable as exc:
        log.warning("issuance_not_confirmed_in_gate", coupon_id=coupon_id, error=str(exc))
    return outcome


async def _take_back(
    gate: IssuanceGate, coupon_id: int, user_id: int, attempts: int = UNDO_ATTEMPTS
) -> None:
    for attempt in range(1, attempts + 1):
        try:
            await gate.undo(coupon_id, user_id)
            return
        except GateUnavailable as exc:
            if attempt == attempts:
                # Left admitted, the user would be told ALREADY_ISSUED until the gate is rebuilt.
                log.error(
                    "admission_not_taken_back", coupon_id=coupon_id, user_id=user_id, error=str(exc)
                )
                return
            await asyncio.sleep(0.05 * attempt)


async def rebuild_gate(units: UnitOfWorkFactory, gate: IssuanceGate, coupon_id: int) -> None:
    """Installs the coupon's gate from PostgreSQL unless it is intact; raises CouponNotFound.

    Issuances do not wait for a rebuild. One that commits after the first read below is caught
    by the second read (made once the gate is installed) or, committing after that, confirms
    its user in the installed gate itself: either way the gate ends up knowing every holder."""
    async with gate.rebuilding(coupon_id):
        if await gate.is_intact(coupon_id):
            return  # rebuilt by the request this one waited for
        async with units() as uow:  # only reads: it commits nothing (the lock ends with it)
            repo = CouponRepository(uow.session)
            await repo.lock_for_gate_rebuild(coupon_id)
            coupon = await repo.coupon(coupon_id)
            if coupon is None:
                raise CouponNotFound(coupon_id)
            holders = await repo.holders(coupon_id)
            outcome = await gate.install(coupon_id, coupon.total_quantity, holders)
            late = set(await repo.holders(coupon_id)).difference(holders)
            if late:
                await gate.confirm(coupon_id, sorted(late))
        if outcome is Install.INSTALLED:
            GATE_REBUILDS.inc()
            log.info("coupon_gate_rebuilt", coupon_id=coupon_id, holders=len(holders))
        elif outcome is Install.STAGING_LOST:
            log.warning("coupon_gate_staging_lost", coupon_id=coupon_id)
