"""The relay's circuit breaker: when the data platform (or the way to it) fails, every partition
waits instead of hammering it or moving on, and one probe at a time finds out when it is back.

Closed: deliveries POST freely. After a failure it opens for a capped, jittered exponential
backoff; then the deliveries take turns (one probe at a time) until a POST is answered, which
closes it. Nothing is ever given up here: a paid order waits as long as the outage lasts.
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from order.relay.metrics import CIRCUIT_OPEN
from shopkit.ops.logging import get_logger

log = get_logger(__name__)


class CircuitBreaker:
    def __init__(
        self,
        initial_s: float,
        max_s: float,
        jitter_s: float,
        backlog: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter_s = jitter_s
        self._backlog = backlog
        self._failures = 0
        self._until = 0.0
        self._opened_at = 0.0
        self._probe = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        return self._failures > 0

    @asynccontextmanager
    async def attempt(self) -> AsyncIterator[None]:
        """Around one POST: at once while closed; while open, after the backoff, one at a time."""
        if not self._failures:
            yield
            return
        async with self._probe:  # only the probe holding it moves `_until` on
            delay = self._until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield

    def failed(self, error: str) -> float:
        """The platform did not answer as it should: open (or stay open) a while longer.
        Returns how long deliveries now wait."""
        self._failures += 1
        delay: float = min(self.initial_s * 2.0 ** (self._failures - 1), self.max_s)
        delay += random.uniform(0, self.jitter_s)
        now = time.monotonic()
        self._until = now + delay
        if self._failures == 1:
            self._opened_at = now
            CIRCUIT_OPEN.set(1)
            log.warning(
                "data_platform_unavailable_pausing",
                error=error,
                retry_in_s=round(delay, 3),
                backlog=self._backlog(),
            )
        return delay

    def answered(self) -> None:
        """The platform answered (2xx, or a refusal of one order): close."""
        if self._failures:
            log.warning(
                "data_platform_back",
                paused_s=round(time.monotonic() - self._opened_at, 3),
                failed_attempts=self._failures,
                backlog=self._backlog(),
            )
            CIRCUIT_OPEN.set(0)
        self._failures = 0
        self._until = 0.0
