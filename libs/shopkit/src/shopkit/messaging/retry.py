"""Where an event's retry is decided: the one answer for every consumer built on the engine
(shopkit.messaging.engine: the saga steps, the data-platform relay). If you wonder what happens
to an event whose handling failed, it is here. (The ranking worker's only failure of an event
is one it cannot read: dead-lettered at once, as below, through shopkit.messaging.reading.)

- A failure of the infrastructure (`shopkit.ops.faults.is_transient`: a statement timeout, a
  deadlock, the database, Kafka or an HTTP peer down or overloaded) is not the event's fault: it
  is retried for as long as it lasts, never dead-lettered. After `patience_s` of retrying in
  place the consumer restarts from its committed offsets (the error is raised to the engine,
  which reconnects and goes on); `patience_s=None` waits in place for ever (the relay, whose
  circuit breaker paces those attempts across partitions).
- A failure of the event's own (an invalid payload, a constraint it breaks, a peer refusing it,
  a bug) is retried until `attempts` attempts have failed, with capped exponential backoff, and
  then the event is dead-lettered (`GaveUp`; the caller sends it to the dead-letter topic,
  shopkit.messaging.deadletter).
- A failure of the infrastructure that is a timeout of the work itself (`is_timeout`: the
  database cancelled its statement at statement_timeout or lock_timeout, or it raised
  TimeoutError) is waited out as above, but not for ever when the consumer gives `Timeouts`
  (the saga consumers do; `timeout_patience_s`, the `consumer_timeout_patience_s` setting).
  The rule: an event whose attempts have ALL timed out for longer than `timeout_patience_s`
  (its clock kept across the consumer's restarts, and started again by any other failure) is
  dead-lettered (`TimedOut`, with its reason) only if the infrastructure answers meanwhile:
  `Timeouts.answers()`, the step every event takes without an event (for the saga consumers a
  claim in processed_events, rolled back). Then the fault is this handler's (a query too slow
  for the timeout, a lock someone holds for minutes) and its partition moves on. If the probe
  fails too, every handler would: it is an outage, waited out as any other, and the clock
  starts again. So a database that is down or hangs is never a reason to dead-letter.
- A message that cannot be read at all (no envelope, a payload that is not its event) is
  dead-lettered at once, without a retry: no retry can fix it (`UNREADABLE`, used by
  shopkit.messaging.reading).

`decide` is that decision, free of I/O; `settle` runs an attempt until the decision is final.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from shopkit.ops.faults import is_timeout, is_transient
from shopkit.ops.logging import get_logger
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryRule:
    attempts: int
    """Attempts at an event failing by itself before it is dead-lettered (the first included)."""
    backoff_s: float
    """Wait after its first failure; doubled after each further one, up to `backoff_max_s`."""
    backoff_max_s: float
    transient_backoff_s: float
    """First wait while the infrastructure fails (0: the caller paces, e.g. a breaker)."""
    transient_backoff_max_s: float
    patience_s: float | None
    """How long transient failures are waited out in place before the consumer restarts from
    its committed offsets; None: in place, for ever."""
    timeout_patience_s: float | None = None
    """How long an event may time out on every attempt, while the infrastructure answers,
    before it is dead-lettered; None: for ever (it is waited out like any transient failure)."""

    @classmethod
    def of(cls, settings: ServiceSettings) -> "RetryRule":
        """The saga consumers' rule, from the `consumer_*` settings."""
        return cls(
            attempts=settings.consumer_max_retries + 1,
            backoff_s=settings.consumer_retry_backoff_s,
            backoff_max_s=settings.consumer_transient_backoff_max_s,
            transient_backoff_s=settings.consumer_retry_backoff_s,
            transient_backoff_max_s=settings.consumer_transient_backoff_max_s,
            patience_s=settings.consumer_transient_patience_s,
            timeout_patience_s=settings.consumer_timeout_patience_s,
        )


class Next(Enum):
    RETRY = "retry"
    """The event failed by itself and has attempts left: again after `delay_s`."""
    WAIT = "wait"
    """The infrastructure failed: again after `delay_s`, for as long as it lasts."""
    RESTART = "restart"
    """The infrastructure failed for longer than the patience: restart the consumer."""
    DEAD_LETTER = "dead_letter"
    """The event failed by itself `attempts` times: park it in the dead-letter topic."""
    TIMED_OUT = "timed_out"
    """The event timed out on every attempt for longer than `timeout_patience_s` while the
    infrastructure answered: park it in the dead-letter topic."""


@dataclass(frozen=True)
class Decision:
    next: Next
    delay_s: float = 0.0


def decide(
    error: BaseException,
    *,
    failures: int,
    waits: int,
    waited_s: float,
    rule: RetryRule,
    timed_out_s: float = 0.0,
) -> Decision:
    """What to do after `error`. `failures`: attempts that failed by the event's own fault so
    far (this one included when it is one); `waits`: transient failures waited out so far (this
    one not included); `waited_s`: since the first of them; `timed_out_s`: how long every
    attempt has timed out while the infrastructure answered (0 when it did not answer)."""
    if is_transient(error):
        if rule.timeout_patience_s is not None and timed_out_s > rule.timeout_patience_s:
            return Decision(Next.TIMED_OUT)
        if rule.patience_s is not None and waited_s > rule.patience_s:
            return Decision(Next.RESTART)
        delay = min(rule.transient_backoff_s * 2**waits, rule.transient_backoff_max_s)
        return Decision(Next.WAIT, delay)
    if failures >= rule.attempts:
        return Decision(Next.DEAD_LETTER)
    return Decision(Next.RETRY, min(rule.backoff_s * 2 ** max(failures - 1, 0), rule.backoff_max_s))


UNREADABLE = Decision(Next.DEAD_LETTER)
"""A message that cannot be read: dead-lettered at once."""


class GaveUp(Exception):
    """The event failed by itself `attempts` times: the caller dead-letters it."""

    def __init__(self, error: BaseException, attempts: int, reason: str | None = None) -> None:
        super().__init__(reason or f"{type(error).__name__}: {error}")
        self.error = error
        self.attempts = attempts

    @property
    def reason(self) -> str:
        """The dead letter's `dlq.error`."""
        return str(self)


class TimedOut(GaveUp):
    """The event timed out on every attempt for `timed_out_s` while the infrastructure
    answered: the caller dead-letters it."""

    def __init__(self, error: BaseException, attempts: int, timed_out_s: float) -> None:
        super().__init__(
            error,
            attempts,
            f"timed out on every attempt for {timed_out_s:.1f} s ({attempts} attempts) while "
            f"the infrastructure answered: {type(error).__name__}: {error}",
        )
        self.timed_out_s = timed_out_s


class Timeouts:
    """What a consumer gives `settle` to tell an event that times out on every attempt from an
    outage: a probe of the infrastructure, and since when each event's attempts have timed out.
    It lives as long as the consumer, not the attempt, so the clocks go on across the restarts
    after `patience_s` (the event is delivered again and settled anew)."""

    def __init__(self, answers: Callable[[], Awaitable[bool]], *, remembered: int = 1_000) -> None:
        self.answers = answers
        """True when the infrastructure works for a step every event takes, without an event."""
        self._since: dict[Hashable, float] = {}
        self._remembered = remembered

    def since(self, key: Hashable, now: float) -> float:
        """When `key`'s attempts began to time out (`now` for its first timeout)."""
        if key not in self._since:
            if len(self._since) >= self._remembered:  # events another member handles by now
                del self._since[next(iter(self._since))]
            self._since[key] = now
        return self._since[key]

    def forget(self, key: Hashable) -> None:
        self._since.pop(key, None)

    async def timed_out_for(
        self, key: Hashable, error: BaseException, now: float, patience_s: float
    ) -> float:
        """How long `key`'s attempts have all timed out, `error` the latest, if the
        infrastructure answers once that is longer than `patience_s`; 0 when `error` is no
        timeout or the infrastructure does not answer (then its clock starts again)."""
        if not is_timeout(error):
            self.forget(key)
            return 0.0
        timed_out_s = now - self.since(key, now)
        if timed_out_s <= patience_s:
            return timed_out_s
        if await self.answers():
            return timed_out_s
        log.warning("handler_timing_out_while_infrastructure_fails", error=repr(error))
        self.forget(key)
        return 0.0


async def settle(
    attempt: Callable[[], Awaitable[T]],
    rule: RetryRule,
    *,
    first_error: BaseException | None = None,
    on_waiting: Callable[[bool], None] = lambda _: None,
    timeouts: Timeouts | None = None,
    key: Hashable = None,
) -> tuple[T, int]:
    """Runs `attempt` until it succeeds: its result and the number of attempts made (a
    `first_error`, an attempt made before, counts as one). Raises `GaveUp` when the event is to
    be dead-lettered (`TimedOut` when it timed out for longer than `rule.timeout_patience_s`,
    told by `timeouts`, where its clock is kept under `key`), and the transient error itself
    when the consumer is to restart. `on_waiting(True)` while transient failures are waited
    out, `on_waiting(False)` after."""
    loop = asyncio.get_running_loop()
    failures = waits = 0
    attempts = 0
    waiting_since: float | None = None
    error = first_error
    if error is not None:
        attempts = 1
        failures = 0 if is_transient(error) else 1
    try:
        while True:
            if error is not None:
                if is_transient(error) and waiting_since is None:
                    waiting_since = loop.time()
                    on_waiting(True)
                waited_s = loop.time() - waiting_since if waiting_since is not None else 0.0
                timed_out_s = 0.0
                if timeouts is not None and rule.timeout_patience_s is not None:
                    timed_out_s = await timeouts.timed_out_for(
                        key, error, loop.time(), rule.timeout_patience_s
                    )
                decision = decide(
                    error,
                    failures=failures,
                    waits=waits,
                    waited_s=waited_s,
                    rule=rule,
                    timed_out_s=timed_out_s,
                )
                if decision.next is Next.RESTART:
                    log.warning("handler_waiting_for_infrastructure", error=repr(error))
                    raise error  # the event's timeout clock (if any) goes on
                if decision.next is Next.TIMED_OUT:
                    log.error(
                        "handler_timed_out_on_every_attempt",
                        attempts=attempts,
                        timed_out_s=round(timed_out_s, 1),
                        error=repr(error),
                    )
                    if timeouts is not None:
                        timeouts.forget(key)
                    raise TimedOut(error, attempts, timed_out_s)
                if decision.next is Next.DEAD_LETTER:
                    log.error("handler_gave_up", attempts=attempts, error=repr(error))
                    raise GaveUp(error, attempts)
                if decision.next is Next.WAIT:
                    waits += 1
                    log.warning(
                        "handler_transient_failure", retry_in_s=decision.delay_s, error=repr(error)
                    )
                else:
                    log.warning("handler_failed", attempt=failures, error=repr(error))
                if decision.delay_s > 0:
                    await asyncio.sleep(decision.delay_s)
            attempts += 1
            try:
                result = await attempt()
            except Exception as exc:  # classified by decide()
                error = exc
                if not is_transient(exc):
                    failures += 1
            else:
                if timeouts is not None:
                    timeouts.forget(key)
                return result, attempts
    finally:
        if waiting_since is not None:
            on_waiting(False)
