"""Prometheus metrics of the shared runtime (one registry per process; every service has them)."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Outbox events published", ["event_type"])
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Outbox events not yet published")
OUTBOX_OLDEST_AGE = Gauge("outbox_oldest_age_seconds", "Age of the oldest unpublished event")
EVENTS_CONSUMED = Counter(
    "events_consumed_total", "Events handled by consumers", ["consumer", "event_type", "outcome"]
)
CONSUMER_LAG = Gauge(
    "consumer_lag", "Messages behind the high watermark", ["consumer", "topic", "partition"]
)
DEAD_LETTERED = Counter("dead_lettered_total", "Events sent to the dead-letter topic", ["consumer"])
DEAD_LETTERED_TIMED_OUT = Counter(
    "dead_lettered_timed_out_total",
    "Events dead-lettered because their handler timed out on every attempt for "
    "consumer_timeout_patience_s while the database answered (also in dead_lettered_total)",
    ["consumer"],
)
EVENT_LOOP_LAG = Gauge(
    "event_loop_lag_seconds",
    "How late the event loop last ran a 1 s timer (a blocking call shows here)",
    ["service"],
)
CONSUMER_WAITING = Gauge(
    "consumer_waiting_for_infrastructure",
    "1 while a consumer retries an event because the database, Kafka or a peer fails",
    ["consumer"],
)
CONSUMER_BATCH = Histogram(
    "consumer_batch_events",
    "Events handled per consumer transaction",
    ["consumer"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
