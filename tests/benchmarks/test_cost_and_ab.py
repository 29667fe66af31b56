"""The pure parts of the benchmarks' order cost and A/B comparison (no load, no timing)."""

import pytest

from benchmarks import ab
from benchmarks.checks import Check
from benchmarks.cost import Cost, describe, per_order
from benchmarks.stats import Outcome


def test_cpu_per_paid_order_sums_the_shop_and_leaves_the_harness_out() -> None:
    cpu_s = {
        "order": 2.0,
        "postgres": 1.5,
        "kafka": 0.5,
        "wrk": 0.4,
        "bench (python)": 0.1,
        "reference": 0.05,
    }
    cost = per_order(cpu_s, paid=500)
    assert cost.total_ms == pytest.approx(8.0)  # (2 + 1.5 + 0.5) s / 500 orders
    assert cost.by_group == {"order": 4.0, "postgres": 3.0, "kafka": 1.0}
    assert list(cost.by_group) == ["order", "postgres", "kafka"]  # most first
    assert cost.harness == {"wrk": 0.8, "bench (python)": 0.2, "reference": 0.1}


def test_no_paid_order_has_no_cost() -> None:
    assert per_order({"order": 1.0}, paid=0) == Cost(None)
    assert describe(Cost(None)) == "- (no order PAID)"


def test_describe_shows_the_largest_groups_and_the_harness_apart() -> None:
    cost = per_order({"order": 3.0, "postgres": 2.0, "kafka": 1.0, "wrk": 0.5}, paid=1000)
    assert describe(cost, top=2) == (
        "6.00 ms (order 3.00, postgres 2.00, 1 more); harness, not counted: wrk 0.50"
    )


def _orders_wait(cpu: float | None, paid_per_s: float, ok: bool = True) -> ab.Side:
    reference = Outcome("win", "reference", 2000.0, 20.0, 90.0)
    outcome = Outcome("orders-wait", "scenario", paid_per_s, 800.0, 1000.0)
    outcome.compare(reference)
    outcome.details.update(
        cpu_ms_per_paid=cpu,
        cpu_ms_per_paid_by_process={"order": 5.0, "postgres": 4.0} if cpu else {},
        harness_cpu_ms_per_paid={"wrk": 0.1},
    )
    if not ok:
        outcome.checks.append(Check("all PAID", False, "1 != 2"))
    return ab.Side.of(outcome, reference)


def test_a_side_takes_the_scenario_its_reference_and_its_cost() -> None:
    side = _orders_wait(20.0, 100.0)
    assert side.paid_per_s == 100.0
    assert side.reference_rate == 2000.0
    assert side.ratio == pytest.approx(0.05)
    assert side.cpu_ms_per_paid == 20.0
    assert side.by_group == {"order": 5.0, "postgres": 4.0}
    assert side.ok


def test_median_over_rounds_per_figure_and_per_process() -> None:
    rounds = [
        ab.Side(10.0, 1000.0, 0.01, 1.0, 2.0, 20.0, {"order": 5.0, "kafka": 1.0}),
        ab.Side(30.0, 3000.0, 0.01, 3.0, 6.0, 24.0, {"order": 7.0}),
        ab.Side(20.0, 2000.0, 0.01, 2.0, 4.0, 22.0, {"order": 6.0, "kafka": 3.0}, ok=False),
    ]
    m = ab.median(rounds)
    assert (m.paid_per_s, m.reference_rate, m.p50_ms, m.p99_ms) == (20.0, 2000.0, 2.0, 4.0)
    assert m.cpu_ms_per_paid == 22.0
    assert m.by_group == {"order": 6.0, "kafka": 1.0}  # a round without kafka counts 0
    assert m.rounds == (20.0, 24.0, 22.0)
    assert not m.ok
    with pytest.raises(ValueError, match="no run"):
        ab.median([])


def test_b_over_a() -> None:
    assert ab.b_over_a(20.0, 15.0) == pytest.approx(0.75)
    assert ab.b_over_a(None, 15.0) is None
    assert ab.b_over_a(0.0, 15.0) is None
    assert ab.b_over_a(20.0, None) is None


def test_the_comparison_table_has_a_b_and_b_over_a_for_every_figure() -> None:
    a = ab.median([_orders_wait(20.0, 100.0)])
    b = ab.median([_orders_wait(15.0, 120.0)])
    rows = ab.table(a, b, ("HEAD~3 (abc)", "working tree (def)"))
    assert rows[0] == "| orders-wait | A: HEAD~3 (abc) | B: working tree (def) | B/A |"
    by_name = {r.split(" | ")[0].lstrip("| "): r for r in rows[2:]}
    assert by_name["PAID orders / s"] == "| PAID orders / s | 100.0 | 120.0 | 1.200 |"
    assert by_name["**CPU ms per PAID order**"] == (
        "| **CPU ms per PAID order** | 20.00 | 15.00 | **0.750** |"
    )
    assert by_name["· order"] == "| · order | 5.00 | 5.00 | 1.000 |"
    assert "· *wrk (harness, not counted)*" in by_name
    assert by_name["checks"] == "| checks | ok | ok | |"
    assert not any("each round" in r for r in rows)  # one round: no per-round row
    assert ab.line(a, b) == (
        "ab cpu/order: A=20.00ms B=15.00ms B/A=0.750 paid/s: A=100.0 B=120.0"
        " ratio: A=0.0500 B=0.0600 ok"
    )


def test_the_table_shows_each_round_and_a_failed_side() -> None:
    a = ab.median([_orders_wait(20.0, 100.0), _orders_wait(22.0, 90.0)])
    b = ab.median([_orders_wait(None, 0.0, ok=False), _orders_wait(16.0, 110.0)])
    rows = ab.table(a, b, ("A", "B"))
    assert "| CPU ms per PAID order, each round | 20.00, 22.00 | -, 16.00 | |" in rows
    assert rows[-1] == "| checks | ok | FAILED | |"
    assert "| **CPU ms per PAID order** | 21.00 | 16.00 | **0.762** |" in rows
    assert ab.line(a, b).endswith(" FAILED")
