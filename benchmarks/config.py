"""Sizes and durations, from BENCH_* environment variables."""

import os
from dataclasses import dataclass, field
from typing import Final

SCENARIOS: Final = (
    "coupon-soldout",
    "coupon-winner",
    "coupon-rush",
    "charge-distinct",
    "charge-hot",
    "product-read",
    "top5-read",
    "orders",
    "orders-hold",
    "orders-wait",
    "tracing-cost",
    "idle",
)
REFERENCE_OF: Final = {
    "coupon-soldout": "gate",
    "coupon-winner": "win",
    "charge-distinct": "win",
    "charge-hot": "win",
    "product-read": "read",
    "top5-read": "read",
    "orders-wait": "win",
}
"""scenario → the route of benchmarks/reference.py doing the least that scenario needs"""


def _float(name: str, default: float) -> float:
    return float(os.environ.get(f"BENCH_{name}", default))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(f"BENCH_{name}", default))


def _floats(name: str, default: str) -> tuple[float, ...]:
    raw = os.environ.get(f"BENCH_{name}", default)
    return tuple(float(v) for v in raw.replace(" ", ",").split(",") if v)


def _only() -> tuple[str, ...]:
    raw = os.environ.get("BENCH_ONLY", "")
    chosen = tuple(v.strip() for v in raw.split(",") if v.strip())
    unknown = [v for v in chosen if v not in SCENARIOS]
    if unknown:
        raise SystemExit(f"BENCH_ONLY: unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    return tuple(s for s in SCENARIOS if s in chosen) if chosen else SCENARIOS


@dataclass(frozen=True)
class Config:
    duration_s: float = field(default_factory=lambda: _float("DURATION_S", 15))
    """length of every wrk figure (references included), except the order steps"""
    connections: int = field(default_factory=lambda: _int("CONNECTIONS", 64))
    threads: int = field(default_factory=lambda: _int("THREADS", 2))
    timeout_s: float = field(default_factory=lambda: _float("WRK_TIMEOUT_S", 10))
    """wrk's --timeout: a response slower than this counts as a timeout error"""

    rush_s: float = field(default_factory=lambda: _float("RUSH_S", _float("DURATION_S", 15)))
    rush_quantity: int = field(default_factory=lambda: _int("RUSH_QUANTITY", 1_000))
    rush_users: int = field(default_factory=lambda: _int("RUSH_USERS", 10_000))
    winner_total: int = field(default_factory=lambda: _int("WINNER_TOTAL", 10_000_000))
    charge_amount: int = field(default_factory=lambda: _int("CHARGE_AMOUNT", 1_000))

    order_rates: tuple[float, ...] = field(
        default_factory=lambda: _floats("ORDER_RATES", "25,50,75,100,125,150")
    )
    order_step_s: float = field(default_factory=lambda: _float("ORDER_STEP_S", 15))
    order_hold_rate: float = field(default_factory=lambda: _float("ORDER_HOLD_RATE", 100))
    order_hold_s: float = field(default_factory=lambda: _float("ORDER_HOLD_S", 60))
    order_wait_s: float = field(default_factory=lambda: _float("ORDER_WAIT_S", 120))
    """how long a step waits, after its load, for every order to be PAID or FAILED"""
    order_wait_load_s: float = field(default_factory=lambda: _float("ORDER_WAIT_LOAD_S", 15))
    """orders-wait: how long the closed-loop clients place orders (Prefer: wait=30)"""
    order_p99_limit_ms: float = field(default_factory=lambda: _float("ORDER_P99_LIMIT_MS", 1000))
    order_price: int = field(default_factory=lambda: _int("ORDER_PRICE", 1_000))
    order_quantity: int = field(default_factory=lambda: _int("ORDER_QUANTITY", 1))

    tracing_ratio: float = field(default_factory=lambda: _float("TRACING_RATIO", 0.1))
    """the production sampling ratio whose cost tracing-cost checks (deploy/k8s sets it)"""
    tracing_step_s: float = field(default_factory=lambda: _float("TRACING_STEP_S", 45))
    tracing_budget_pct: float = field(default_factory=lambda: _float("TRACING_BUDGET_PCT", 5))

    idle_s: float = field(default_factory=lambda: _float("IDLE_S", 30))
    idle_budget_pct: float = field(default_factory=lambda: _float("IDLE_BUDGET_PCT", 5))

    redis_url: str = field(
        default_factory=lambda: os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/12")
    )
    only: tuple[str, ...] = field(default_factory=_only)
    ab: str = field(default_factory=lambda: os.environ.get("BENCH_AB", "").strip())
    """a commit: run orders-wait (and /win) on it and on the working tree, side by side"""
    ab_rounds: int = field(default_factory=lambda: max(1, _int("AB_ROUNDS", 1)))
    """BENCH_AB: rounds of A then B (medians reported)"""

    def references(self) -> tuple[str, ...]:
        """The reference routes the chosen scenarios need, in first-use order."""
        needed = [REFERENCE_OF[s] for s in self.only if s in REFERENCE_OF]
        return tuple(dict.fromkeys(needed))
