"""Prometheus metrics of the shared runtime (every service has them), and the one scrape that adds
up a service's HTTP processes.

One process (`<SVC>_HTTP_WORKERS=1`, or an app a test builds in-process): /metrics shows the
process's own registry. Several (shopkit.http.server.serve_processes): their supervisor makes a
fresh directory for them and names it in PROMETHEUS_MULTIPROC_DIR before it starts them, so
prometheus_client keeps each process's values in mmapped files there (its multiprocess mode,
chosen when it is imported), and whichever process takes a scrape answers with the whole
service: counters and histograms summed over every process the run started, the dead ones
included (a restart neither loses nor repeats a count); each gauge combined as its
`multiprocess_mode` says, over the live processes only (the supervisor drops a dead process's
gauges). prometheus_client's multiprocess mode has no per-process collectors: the `process_*`
and `python_*` series are absent then."""

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Outbox events published", ["event_type"])
# A gauge's service value is the largest of the live processes' (multiprocess_mode): the ones
# the workers set come from the one process that runs them (the others hold 0 or nothing).
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog", "Outbox events not yet published", multiprocess_mode="livemax"
)
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_age_seconds",
    "Age of the oldest unpublished event",
    multiprocess_mode="livemax",
)
EVENTS_CONSUMED = Counter(
    "events_consumed_total", "Events handled by consumers", ["consumer", "event_type", "outcome"]
)
CONSUMER_LAG = Gauge(
    "consumer_lag",
    "Messages behind the high watermark",
    ["consumer", "topic", "partition"],
    multiprocess_mode="livemax",
)
DEAD_LETTERED = Counter("dead_lettered_total", "Events sent to the dead-letter topic", ["consumer"])
DEAD_LETTERED_TIMED_OUT = Counter(
    "dead_lettered_timed_out_total",
    "Events dead-lettered because their handler timed out on every attempt for "
    "consumer_timeout_patience_s while the database answered (also in dead_lettered_total)",
    ["consumer"],
)
EVENT_LOOP_LAG = Gauge(  # every process measures its own: the service shows the worst
    "event_loop_lag_seconds",
    "How late the event loop last ran a 1 s timer (a blocking call shows here; with several "
    "HTTP processes, the worst of them)",
    ["service"],
    multiprocess_mode="livemax",
)
CONSUMER_WAITING = Gauge(
    "consumer_waiting_for_infrastructure",
    "1 while a consumer retries an event because the database, Kafka or a peer fails",
    ["consumer"],
    multiprocess_mode="livemax",
)
CONSUMER_BATCH = Histogram(
    "consumer_batch_events",
    "Events handled per consumer transaction",
    ["consumer"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""Where prometheus_client keeps the values of a service's processes (set by their supervisor)."""


def exposition() -> bytes:
    """What /metrics answers: the metrics of this process, or of every process of the service
    when its supervisor started several."""
    return generate_latest(_scraped_registry())


@functools.cache
def _scraped_registry() -> CollectorRegistry:
    directory = os.environ.get(MULTIPROCESS_DIR)
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()  # its own: the metrics above come from the files, once
    MultiProcessCollector(registry, directory)  # type: ignore[no-untyped-call]
    return registry


def directory_of(host: str, port: int) -> Path:
    """The metrics directory of the processes serving `host:port`. Named by the address because
    only one supervisor at a time holds it: each run starts it empty, wherever its predecessor
    (killed, with no chance to clean up) left off. Under the temporary directory (TMPDIR)."""
    return Path(tempfile.gettempdir()) / f"shop-metrics-{host}-{port}"


@contextlib.contextmanager
def shared_by_processes(host: str, port: int) -> Iterator[Path]:
    """For a supervisor about to start the processes that serve `host:port` (which it holds): an
    empty metrics directory, named in PROMETHEUS_MULTIPROC_DIR for the processes it starts
    meanwhile (they inherit its environment), removed at the end."""
    directory = directory_of(host, port)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    previous = os.environ.get(MULTIPROCESS_DIR)
    os.environ[MULTIPROCESS_DIR] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_DIR, None)
        else:
            os.environ[MULTIPROCESS_DIR] = previous
        shutil.rmtree(directory, ignore_errors=True)


def process_ended(pid: int, directory: Path) -> None:
    """Drops the gauges of a process that ended (its counts stay: they happened)."""
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
