"""Transient or permanent: one answer, used by every consumer, relay and worker.

A transient failure is the infrastructure's, not the work's: the database timed out a statement,
chose this transaction as a deadlock victim, ran out of connections or is restarting; Kafka,
Redis or an HTTP peer did not answer. Such work is retried, for as long as the failure lasts, and
never dead-lettered. Anything else (an invalid payload, a constraint the event breaks, a bug) is
permanent: retrying cannot fix it.

PostgreSQL failures are classified by the driver's own error, whatever SQLAlchemy wraps it in
(its `orig`, and what it was raised from): first, bad data is permanent, always: a data
exception or an integrity violation (SQLSTATE classes 22 and 23, asyncpg's DataError and
IntegrityConstraintViolationError and their subclasses) and asyncpg's refusal to encode an
argument (a value outside int64 for a bigint, raised before anything is sent, which SQLAlchemy
may wrap in an InterfaceError or a lost connection: asyncpg 0.32 raises it as the server's
class-22 DataError, older ones as an InterfaceError that is also a ValueError). Then the SQLSTATE
(https://www.postgresql.org/docs/current/errcodes-appendix.html), which asyncpg reports on every
server error and SQLAlchemy keeps on the error it wraps. Only an error without either is judged
by its wrapper (a lost connection, SQLAlchemy's InterfaceError or OperationalError: transient),
or, unwrapped, as the driver's lost connection: asyncpg's InterfaceError 'connection is closed'
(what it raises, before sending anything, for a statement on a connection the server closed:
SQLAlchemy's asyncpg dialect recognises it by the same words), ConnectionDoesNotExistError
(SQLSTATE 08003) and the socket's own errors (ConnectionResetError, …) are transient.

Among transient failures, `is_timeout` tells the work's own slowness (the database cancelled its
statement at statement_timeout or lock_timeout, or it raised TimeoutError) from an outage: a
consumer gives up on an event that times out on every attempt while the database otherwise
answers (shopkit.messaging.retry).
"""

from collections.abc import Iterator

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

TRANSIENT_SQLSTATE_CLASSES = frozenset(
    {
        "08",  # connection exception (also "cannot connect now" at start-up: 57P03 below)
        "53",  # insufficient resources: too many connections, out of memory, disk full
        "57",  # operator intervention: statement timeout (57014), shutdown, cannot connect now
        "58",  # system error (I/O) outside PostgreSQL
    }
)
PERMANENT_SQLSTATE_CLASSES = frozenset(
    {
        "22",  # data exception: numeric value out of range (22003), invalid text (22P02), …
        "23",  # integrity constraint violation: unique, foreign key, check, not null
    }
)
BAD_DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,  # the server's class 22, and asyncpg 0.32's argument encoding
    asyncpg.exceptions.IntegrityConstraintViolationError,  # the server's class 23
)
"""The driver's errors that say the data itself is wrong (with `_is_refused_argument`)."""
TIMEOUT_SQLSTATES = frozenset(
    {
        "57014",  # query_canceled: statement_timeout (or a cancel request)
        "55P03",  # lock_not_available: lock_timeout, NOWAIT
    }
)
TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization failure
        "40P01",  # deadlock detected
        "40003",  # statement completion unknown
        "55P03",  # lock not available (lock_timeout, NOWAIT)
        "55006",  # object in use
        "25P03",  # idle in transaction session timeout
    }
)
_TRANSIENT_FOREIGN = {
    # Kafka, Redis and HTTP clients' network failures, by module and class name, so that this
    # module needs none of them installed.
    ("redis.exceptions", "ConnectionError"),
    ("redis.exceptions", "TimeoutError"),
    ("redis.exceptions", "BusyLoadingError"),
    ("redis.exceptions", "TryAgainError"),
    ("redis.exceptions", "ClusterDownError"),
    ("httpx", "TransportError"),
    ("aiokafka.errors", "KafkaTimeoutError"),  # not marked retriable, but it is
    # The broker lost the producer's idempotence state (restarted): shopkit.messaging.kafka.Producer has
    # replaced the producer by the time this is seen, so sending again works.
    ("aiokafka.errors", "OutOfOrderSequenceNumber"),
    ("aiokafka.errors", "UnknownProducerId"),
    ("aiokafka.errors", "InvalidProducerEpoch"),
    ("aiokafka.errors", "ProducerFenced"),
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error, what it wraps (`orig`) and what it was raised from, once each."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        # Not __context__: an error raised while handling a timeout is not a timeout.
        todo += [orig if isinstance(orig, BaseException) else None, current.__cause__]


def sqlstate_of(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of a server error, wrapped or not; None for anything else."""
    for error in _chain(exc):
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def _is_refused_argument(error: BaseException) -> bool:
    """asyncpg's client-side "invalid query input" before 0.32 (and wherever it still raises
    it): an InterfaceError that is also a ValueError, by its public classes (the class itself is
    private to asyncpg), apart from a client configuration error (also both)."""
    return (
        isinstance(error, asyncpg.exceptions.InterfaceError)
        and isinstance(error, ValueError)
        and not isinstance(error, asyncpg.exceptions.ClientConfigurationError)
    )


def _is_closed_connection(error: BaseException) -> bool:
    """asyncpg's refusal to use a connection that is closed (the server ended it): the same test
    as SQLAlchemy's asyncpg dialect (`is_disconnect`) makes without a connection at hand."""
    return isinstance(error, asyncpg.exceptions.InterfaceError) and "connection is closed" in str(
        error
    )


def is_transient_sqlstate(code: str) -> bool:
    return code[:2] in TRANSIENT_SQLSTATE_CLASSES or code in TRANSIENT_SQLSTATES


def is_bad_data(exc: BaseException) -> bool:
    """True when the driver's error under `exc`, however wrapped, says the data is wrong: a
    data exception or integrity violation (by class or by SQLSTATE) or an argument asyncpg
    could not encode."""
    for error in _chain(exc):
        if isinstance(error, BAD_DATA_ERRORS) or _is_refused_argument(error):
            return True
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str) and code[:2] in PERMANENT_SQLSTATE_CLASSES:
            return True
    return False


def _is_transient_foreign(error: BaseException) -> bool:
    if getattr(error, "retriable", False) is True:  # aiokafka's retriable errors say so
        return True
    return any(
        (cls.__module__.split("._")[0], cls.__name__) in _TRANSIENT_FOREIGN
        for cls in type(error).__mro__
    )


def is_transient(exc: BaseException) -> bool:
    """True when `exc` is the infrastructure's failure (retry while it lasts), False when it is
    the work's own (retrying cannot help)."""
    if is_bad_data(exc):
        return False
    code = sqlstate_of(exc)
    if code is not None:
        return is_transient_sqlstate(code)
    for error in _chain(exc):
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, OperationalError | InterfaceError | PoolTimeout):
            return True
        if isinstance(error, OSError | TimeoutError | ConnectionError):
            return True
        if _is_closed_connection(error):
            return True
        if _is_transient_foreign(error):
            return True
    return False


def is_timeout(exc: BaseException) -> bool:
    """True when `exc` is the work's own slowness: the database cancelled its statement at
    statement_timeout or lock_timeout, or it raised TimeoutError. Not a pool with no connection
    free, nor a lost or refused connection: those are outages. (Transient, too: whether the
    work or the database is to blame is for the caller to find out, see shopkit.messaging.retry.)"""
    if not is_transient(exc):
        return False
    code = sqlstate_of(exc)
    if code is not None:
        return code in TIMEOUT_SQLSTATES
    errors = list(_chain(exc))
    if any(isinstance(error, PoolTimeout) for error in errors):
        return False
    return any(isinstance(error, TimeoutError) for error in errors)
