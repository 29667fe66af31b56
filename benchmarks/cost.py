"""What an order costs: CPU milliseconds per PAID order, from the CPU seconds each process group
used over an order step (its load and its drain, see orders.run_step).

The shop is every measured group but the harness: the services (each with its HTTP processes and
workers), the order relay, the ranking API and worker, the stand-in data platform, Kafka,
PostgreSQL (the postmaster and every backend), Redis, and Zipkin when it runs locally. The harness
(wrk, this benchmark's own Python, the reference app, idle during orders) is reported apart and
never in the total."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

HARNESS: Final = ("wrk", "bench (python)", "reference")


@dataclass(frozen=True)
class Cost:
    total_ms: float | None
    """CPU ms per PAID order over the shop's processes (None: no order was PAID)"""
    by_group: dict[str, float] = field(default_factory=dict)
    """process group → its CPU ms per PAID order, most first"""
    harness: dict[str, float] = field(default_factory=dict)
    """wrk and the bench's own Python, per PAID order (not in total_ms)"""


def per_order(cpu_s: Mapping[str, float], paid: int) -> Cost:
    if paid <= 0:
        return Cost(None)

    def ms(seconds: float) -> float:
        return round(seconds * 1000 / paid, 3)

    shop = {name: s for name, s in cpu_s.items() if name not in HARNESS}
    by_group = {name: ms(s) for name, s in sorted(shop.items(), key=lambda kv: -kv[1])}
    harness = {name: ms(cpu_s[name]) for name in HARNESS if name in cpu_s}
    return Cost(ms(sum(shop.values())), by_group, harness)


def describe(cost: Cost, top: int = 0) -> str:
    """'16.6 ms (postgres 3.8, order 3.7, …); harness: wrk 0.9, …' (`top`: groups shown, 0 all)."""
    if cost.total_ms is None:
        return "- (no order PAID)"
    groups = list(cost.by_group.items())
    shown = groups[:top] if top else groups
    text = f"{cost.total_ms:.2f} ms (" + ", ".join(f"{n} {v:.2f}" for n, v in shown)
    if len(shown) < len(groups):
        text += f", {len(groups) - len(shown)} more"
    text += ")"
    if cost.harness:
        text += "; harness, not counted: " + ", ".join(
            f"{n} {v:.2f}" for n, v in cost.harness.items()
        )
    return text
