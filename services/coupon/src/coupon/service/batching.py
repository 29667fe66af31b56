"""Group commit for a rush's winners.

Every copy issued counts on the coupon's row, so issuances of one coupon queue on its lock:
one transaction per winner would cap a rush at one commit (a WAL flush) at a time. Instead, the
winners the gate admitted while the previous batch was being written are written together, in
one transaction per batch (CouponRepository.take_copies). Nothing waits on a timer: a lone
request is written at once; under a rush, batches grow by themselves. A batch that fails is
written again one request at a time, so only the request at fault gets the error.
"""

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from coupon.adapters.repository import CouponRepository, Refusal
from coupon.domain.coupons import IssuedCoupon
from shopkit.database.listen import first_of
from shopkit.database.uow import UnitOfWorkFactory
from shopkit.ops.logging import get_logger
from shopkit.ops.runtime import Runtime

log = get_logger(__name__)

MAX_BATCH: Final = 1_000


@dataclass
class _Asked:
    coupon_id: int
    user_id: int
    issued_at: datetime
    answer: asyncio.Future[IssuedCoupon | Refusal] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class IssuanceBatcher:
    def __init__(self, units: UnitOfWorkFactory) -> None:
        self._units = units
        self._queue: list[_Asked] = []
        self._ready = asyncio.Event()
        self._running = False

    async def take_copy(
        self, coupon_id: int, user_id: int, issued_at: datetime
    ) -> IssuedCoupon | Refusal:
        """The user's copy, or why not; raises what the database raised for the batch."""
        if not self._running:
            raise RuntimeError("the issuance writer is not running")
        asked = _Asked(coupon_id, user_id, issued_at)
        self._queue.append(asked)
        self._ready.set()
        # shielded: a request given up by its client must not cancel the batch's answer
        return await asyncio.shield(asked.answer)

    async def run(self, _: Runtime, stop: asyncio.Event) -> None:
        self._running = True
        try:
            while not stop.is_set():
                await first_of(stop, self._ready, within_s=60)
                self._ready.clear()
                while self._queue:
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                    await self._write(batch)
        finally:
            self._running = False
            while self._queue:  # requests that came in during shutdown
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._write(batch)

    async def _write(self, batch: list[_Asked]) -> None:
        by_coupon: dict[int, list[_Asked]] = defaultdict(list)
        for asked in batch:
            by_coupon[asked.coupon_id].append(asked)
        try:
            answers: dict[int, dict[int, IssuedCoupon | Refusal]] = {}
            async with self._units() as uow:
                repo = CouponRepository(uow.session)
                for coupon_id in sorted(by_coupon):  # one lock order for every writer
                    answers[coupon_id] = await repo.take_copies(
                        coupon_id, [(a.user_id, a.issued_at) for a in by_coupon[coupon_id]]
                    )
                await uow.commit()
        except Exception as exc:
            log.warning("issuance_batch_failed", requests=len(batch), error=repr(exc))
            if len(batch) > 1:  # one request's failure must not fail the others: alone
                for asked in batch:
                    await self._write([asked])
                return
            if not batch[0].answer.done():
                batch[0].answer.set_exception(exc)
            return
        for coupon_id, asked_of_coupon in by_coupon.items():
            given: set[int] = set()
            for asked in asked_of_coupon:
                answer = answers[coupon_id][asked.user_id]
                if isinstance(answer, IssuedCoupon) and asked.user_id in given:
                    answer = Refusal.ALREADY_HELD  # the same user twice in one batch
                given.add(asked.user_id)
                if not asked.answer.done():
                    asked.answer.set_result(answer)
