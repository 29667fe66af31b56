from prometheus_client import Counter, Gauge, Histogram

DELIVERED = Counter("dataplatform_delivered_total", "Paid orders the data platform accepted (2xx)")
RETRIED = Counter(
    "dataplatform_retries_total", "Delivery attempts that failed and were tried again"
)
DEAD_LETTERED = Counter(
    "dataplatform_dead_lettered_total", "Paid orders sent to the dead-letter topic"
)
SKIPPED = Counter(
    "dataplatform_duplicates_skipped_total", "Redelivered events that had already been delivered"
)
DELIVERY_SECONDS = Histogram(
    "dataplatform_delivery_seconds",
    "From the first attempt to the 2xx, retries included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
# The relay runs in every HTTP process of its service (a component), each with its partitions
# and its circuit: their backlogs add up, and the circuit shows open while one of them is
# (how the live processes' values combine: shopkit.ops.metrics).
CIRCUIT_OPEN = Gauge(
    "dataplatform_circuit_open",
    "1 while the data platform fails and every delivery waits (the relay is paused)",
    multiprocess_mode="livemax",
)
BACKLOG = Gauge(
    "dataplatform_backlog",
    "Messages on the order topic this relay has not finished yet (its assigned partitions)",
    multiprocess_mode="livesum",
)
