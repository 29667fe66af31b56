"""The order service's own Prometheus metrics, observed only after the transaction commits
(a rolled-back or retried saga step is not counted twice)."""

from prometheus_client import Counter, Histogram

from order.domain.order import Order
from shopkit.database.uow import UnitOfWork

ORDERS_CREATED = Counter("orders_created_total", "Orders placed (idempotent replays not counted)")
SAGA_OUTCOMES = Counter(
    "saga_orders_total",
    "Orders that reached a terminal state, by status and failure reason",
    ["status", "reason"],
)
SAGA_DURATION = Histogram(
    "saga_duration_seconds",
    "Time from placing an order to its terminal state",
    ["status"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)


def order_placed(uow: UnitOfWork) -> None:
    uow.after_commit(ORDERS_CREATED.inc)


def order_ended(uow: UnitOfWork, order: Order) -> None:
    status = order.status.value
    reason = order.failure_reason.value if order.failure_reason else "none"
    elapsed = ((order.finished_at or order.created_at) - order.created_at).total_seconds()

    def observe() -> None:
        SAGA_OUTCOMES.labels(status, reason).inc()
        SAGA_DURATION.labels(status).observe(elapsed)

    uow.after_commit(observe)
