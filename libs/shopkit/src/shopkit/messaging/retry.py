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
- A message that cannot be read at all (no envelope, a payload that is not its event) is
  dead-lettered at once, without a retry: no retry can fix it (`UNREADABLE`, used by
  shopkit.messaging.reading).

`decide` is that decision, free of I/O; `settle` runs an attempt until the decision is final.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from shopkit.ops.faults import is_transient
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


@dataclass(frozen=True)
class Decision:
    next: Next
    delay_s: float = 0.0


def decide(
    error: BaseException, *, failures: int, waits: int, waited_s: float, rule: RetryRule
) -> Decision:
    """What to do after `error`. `failures`: attempts that failed by the event's own fault so
    far (this one included when it is one); `waits`: transient failures waited out so far (this
    one not included); `waited_s`: since the first of them."""
    if is_transient(error):
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

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.attempts = attempts

    @property
    def reason(self) -> str:
        """The dead letter's `dlq.error`."""
        return str(self)


async def settle(
    attempt: Callable[[], Awaitable[T]],
    rule: RetryRule,
    *,
    first_error: BaseException | None = None,
    on_waiting: Callable[[bool], None] = lambda _: None,
) -> tuple[T, int]:
    """Runs `attempt` until it succeeds: its result and the number of attempts made (a
    `first_error`, an attempt made before, counts as one). Raises `GaveUp` when the event is to
    be dead-lettered, and the transient error itself when the consumer is to restart.
    `on_waiting(True)` while transient failures are waited out, `on_waiting(False)` after."""
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
                decision = decide(
                    error, failures=failures, waits=waits, waited_s=waited_s, rule=rule
                )
                if decision.next is Next.RESTART:
                    log.warning("handler_waiting_for_infrastructure", error=repr(error))
                    raise error
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
                return await attempt(), attempts
            except Exception as exc:  # classified by decide()
                error = exc
                if not is_transient(exc):
                    failures += 1
    finally:
        if waiting_since is not None:
            on_waiting(False)
