"""Every order ends: PENDING orders past their deadline fail with TIMEOUT.

The resulting OrderFailed makes product, coupon and point give back whatever they took (the
point service refunds a payment that came too late, or records that the order must not be paid).
A saga answer that arrives afterwards finds the order FAILED and changes nothing here.
Batches are claimed with `FOR UPDATE SKIP LOCKED`, so every replica can run the sweeper.
"""

import asyncio

from order.adapters.repository import OrderRepository
from order.config import Settings
from order.domain.order import Effect
from order.service import metrics
from shopkit.database.uow import UnitOfWorkFactory
from shopkit.ops.logging import bound, get_logger
from shopkit.ops.runtime import Runtime, Worker

log = get_logger(__name__)


async def expire_overdue(units: UnitOfWorkFactory, limit: int) -> int:
    """Fails up to `limit` overdue orders in one transaction; how many it failed."""
    async with units() as uow:
        repo = OrderRepository(uow.session)
        now = await repo.database_now()
        overdue = await repo.lock_overdue(now, limit)
        for order in overdue:
            with bound(order_id=str(order.order_id)):
                if order.expire(now) is Effect.APPLIED:
                    await repo.save(order)
                    uow.collect(order)
                    metrics.order_ended(uow, order)
                    log.warning(
                        "order_timed_out",
                        stock_reserved=order.stock_reserved,
                        priced=order.pricing is not None,
                        paid_amount=order.paid_amount,
                    )
        await uow.commit()
    return len(overdue)


def deadline_sweeper(settings: Settings) -> Worker:
    async def sweep_order_deadlines(runtime: Runtime, stop: asyncio.Event) -> None:
        log.info("deadline_sweeper_started", saga_timeout_s=settings.saga_timeout_s)
        while not stop.is_set():
            try:
                while (
                    await expire_overdue(runtime.unit_of_work, settings.deadline_sweep_batch)
                    == settings.deadline_sweep_batch
                    and not stop.is_set()
                ):
                    pass
            except Exception:
                log.exception("deadline_sweep_failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.deadline_sweep_interval_s)
            except TimeoutError:
                pass
        log.info("deadline_sweeper_stopped")

    return sweep_order_deadlines
