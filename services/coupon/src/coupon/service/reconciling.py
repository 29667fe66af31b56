"""Gate reconciliation: admissions in the Redis gate that no issued copy in PostgreSQL backs.

A process killed between the gate's admission and the database commit (or a take-back that
could not reach Redis) leaves a user admitted with no copy: told ALREADY_ISSUED forever, and one
copy of the coupon never issued. The reconciler compares each open coupon's gate with the
database, periodically (`gate_reconcile_interval_s`, in every process that runs workers) and on
demand (`python -m coupon.reconcile`, `make reconcile-gates`).

An admission seen unbacked may be an issuance still in flight, so it is repaired only if it is
still unbacked `gate_reconcile_grace_s` later. Taking it back is the same script as a failed
write's take-back: the user may try again, and the copy is free for the next one. Should the
database commit that user's copy after all, the gate is only a filter: PostgreSQL refuses a
second copy and never issues past the total, and the committed issuance confirms its user in the
gate again.
"""

import asyncio
from collections.abc import Sequence

from prometheus_client import Counter

from coupon.adapters.gate import IssuanceGate
from coupon.adapters.repository import CouponRepository
from coupon.config import Settings
from shopkit.database.uow import UnitOfWorkFactory
from shopkit.ops.logging import get_logger
from shopkit.ops.runtime import Runtime, Worker

log = get_logger(__name__)

REPAIRED = Counter(
    "coupon_gate_admissions_repaired_total",
    "Gate admissions no issued copy backed, taken back by the reconciler",
)


async def _holders(units: UnitOfWorkFactory, coupon_id: int) -> set[int]:
    async with units() as uow:
        return set(await CouponRepository(await uow.read_only()).holders(coupon_id))


async def unbacked(units: UnitOfWorkFactory, gate: IssuanceGate, coupon_id: int) -> set[int]:
    """Users the gate admitted whom the database does not know (right now)."""
    admitted = await gate.admitted(coupon_id)
    if not admitted:
        return set()
    return admitted - await _holders(units, coupon_id)


async def reconcile(
    units: UnitOfWorkFactory,
    gate: IssuanceGate,
    coupon_ids: Sequence[int],
    grace_s: float,
) -> dict[int, list[int]]:
    """Repairs the coupons' gates; the users taken back, per coupon (only coupons with some)."""
    suspects = {c: found for c in coupon_ids if (found := await unbacked(units, gate, c))}
    if not suspects:
        return {}
    await asyncio.sleep(grace_s)  # issuances in flight commit (or take themselves back)
    repaired: dict[int, list[int]] = {}
    for coupon_id, users in suspects.items():
        still = sorted(users - await _holders(units, coupon_id))
        taken_back = [user for user in still if await gate.undo(coupon_id, user)]
        if taken_back:
            REPAIRED.inc(len(taken_back))
            repaired[coupon_id] = taken_back
            log.warning(
                "gate_admissions_repaired",
                coupon_id=coupon_id,
                users=taken_back[:50],
                count=len(taken_back),
            )
    return repaired


async def open_coupons(units: UnitOfWorkFactory) -> list[int]:
    async with units() as uow:
        return await CouponRepository(await uow.read_only()).open_coupon_ids()


def gate_reconciler(settings: Settings, gate: IssuanceGate | None) -> Worker:
    """The periodic reconciliation; with no gate given (a worker-only process), its own."""

    async def reconcile_gates(runtime: Runtime, stop: asyncio.Event) -> None:
        own = gate is None
        current = gate or IssuanceGate.connect(
            settings.model_copy(update={"redis_max_connections": 4})
        )
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=settings.gate_reconcile_interval_s)
                    return
                except TimeoutError:
                    pass
                try:
                    coupon_ids = await open_coupons(runtime.unit_of_work)
                    await reconcile(
                        runtime.unit_of_work, current, coupon_ids, settings.gate_reconcile_grace_s
                    )
                except Exception:
                    log.warning("gate_reconcile_failed", exc_info=True)
        finally:
            if own:
                await current.close()

    return reconcile_gates
