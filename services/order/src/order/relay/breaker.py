"""The relay's circuit breaker: when the data platform (or the way to it) fails, every partition
waits instead of hammering it or moving on, and one probe at a time finds out when it is back.

Closed: deliveries POST freely. After a failure it opens for a capped, jittered exponential
backoff; then the deliveries take turns (one probe at a time) until a POST is answered, which
closes it. Nothing is ever given up here: a paid order waits as long as the outage lasts.

It counts outages, not requests. The rule:

- Every POST is stamped, as it starts, with the breaker's current *window* (`attempt()` hands
  out the stamp; `failed()` and `answered()` take it back). A counted failure ends the window
  and starts the next one.
- A failure counts — it opens the breaker, or doubles its backoff — only if its POST started in
  the current window, i.e. after the last counted failure. The other POSTs that were in flight
  when the platform failed (every partition's) are the same failure seen again: they wait out
  the backoff already set and change nothing. While open, POSTs start only as probes, one at a
  time and after the backoff, so from the second step on the backoff doubles only when a probe
  made after the window opened fails again.
- An answer (a 2xx, or the platform refusing one order) closes the breaker only if its POST also
  started in the current window: after the last counted failure, hence after the breaker
  opened. An answer to a POST that started earlier says the platform was up then, not that it
  is back, and is ignored (it is still that order's answer; only the breaker disregards it).

So 8 partitions failing at once are one step (`initial_s`), one partition's late success does
not reopen the gates for all, and a long outage settles at `max_s` between probes.
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from order.relay.metrics import CIRCUIT_OPEN
from shopkit.ops.logging import get_logger

log = get_logger(__name__)

MAX_DOUBLINGS = 60
"""Past this many doublings any backoff is at `max_s` (and 2.0 ** n would overflow past ~1023)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST's stamp: the breaker's window when it started."""

    window: int


class CircuitBreaker:
    def __init__(
        self,
        initial_s: float,
        max_s: float,
        jitter_s: float,
        backlog: Callable[[], int | None] = lambda: None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter_s = jitter_s
        self._backlog = backlog
        self._clock = clock
        self._sleep = sleep
        self._window = 0  # counted failures so far (all outages): the current window
        self._steps = 0  # counted failures of this outage (0: closed)
        self._failed_posts = 0  # every failed POST of this outage, counted or not (for the log)
        self._until = 0.0
        self._opened_at = 0.0
        self._probe = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        return self._steps > 0

    @asynccontextmanager
    async def attempt(self) -> AsyncIterator[Attempt]:
        """Around one POST: at once while closed; while open, after the backoff, one at a time.
        Yields the POST's stamp, to hand back to `failed()` or `answered()`."""
        if self.is_open:
            async with self._probe:  # only the probe holding it starts a window's POST
                while self.is_open and (delay := self._until - self._clock()) > 0:
                    await self._sleep(delay)
                if self.is_open:
                    yield Attempt(self._window)
                    return
        # Closed, or closed while this one waited its turn: no need to take turns any more.
        yield Attempt(self._window)

    def failed(self, attempt: Attempt, error: str) -> float:
        """The platform did not answer `attempt` as it should: open (or stay open) a while
        longer if it is the current window's failure. Returns how long deliveries now wait."""
        now = self._clock()
        if self.is_open:
            self._failed_posts += 1
        if attempt.window != self._window:  # started before the last counted failure: seen
            return max(self._until - now, 0.0)
        self._window += 1
        self._steps += 1
        delay = min(self.initial_s * 2.0 ** min(self._steps - 1, MAX_DOUBLINGS), self.max_s)
        delay += random.uniform(0, self.jitter_s)
        self._until = now + delay
        if self._steps == 1:
            self._opened_at = now
            self._failed_posts = 1
            CIRCUIT_OPEN.set(1)
            log.warning(
                "data_platform_unavailable_pausing",
                error=error,
                retry_in_s=round(delay, 3),
                backlog=self._backlog(),
            )
        return delay

    def answered(self, attempt: Attempt) -> None:
        """The platform answered `attempt` (2xx, or a refusal of one order): close, if it is an
        answer from after the last counted failure."""
        if not self.is_open or attempt.window != self._window:
            return
        log.warning(
            "data_platform_back",
            paused_s=round(self._clock() - self._opened_at, 3),
            failed_attempts=self._failed_posts,
            backlog=self._backlog(),
        )
        CIRCUIT_OPEN.set(0)
        self._steps = 0
        self._failed_posts = 0
        self._until = 0.0
