"""Results of a run: one line per scenario, and the report (results.json, report.md, PNG charts)."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.checks import Check
from benchmarks.cost import HARNESS, Cost, describe
from benchmarks.measure import Figures
from benchmarks.wrk import WrkResult


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Outcome:
    name: str
    kind: str
    """"scenario" or "reference" (a route of benchmarks/reference.py)"""
    rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    checks: list[Check] = field(default_factory=list)
    wrk: WrkResult | None = None
    figures: Figures | None = None
    reference: str | None = None
    ratio: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def compare(self, reference: "Outcome | None") -> None:
        if reference is not None and reference.rate and self.rate is not None:
            self.reference = reference.name
            self.ratio = self.rate / reference.rate

    @property
    def cost(self) -> Cost | None:
        """CPU per PAID order, for the order scenarios (of the step their figures are)."""
        if "cpu_ms_per_paid" not in self.details:
            return None
        return Cost(
            self.details["cpu_ms_per_paid"],
            self.details.get("cpu_ms_per_paid_by_process", {}),
            self.details.get("harness_cpu_ms_per_paid", {}),
        )

    def line(self) -> str:
        label = "bench" if self.kind == "scenario" else "reference"
        cost = self.cost
        return (
            f"{label} {self.name}: {_num(self.rate)}/s p50={_num(self.p50_ms, 2)}"
            f" p99={_num(self.p99_ms, 2)} ratio={_num(self.ratio, 3)}"
            + (f" cpu/order={_num(cost.total_ms, 2)}ms" if cost else "")
            + f" {'ok' if self.ok else 'FAILED'}"
        )

    def cost_line(self) -> str | None:
        """`cost <scenario>: <ms> ms (<group> <ms>, …); harness, not counted: wrk <ms>, …`"""
        cost = self.cost
        return f"cost {self.name}: {describe(cost)}" if cost else None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "rate_per_s": _round(self.rate, 1),
            "p50_ms": _round(self.p50_ms, 3),
            "p99_ms": _round(self.p99_ms, 3),
            "reference": self.reference,
            "ratio": _round(self.ratio, 4),
            "ok": self.ok,
            "checks": [c.__dict__ for c in self.checks],
            "wrk": self.wrk.summary() if self.wrk else None,
            "seconds_measured": _round(self.figures.seconds, 2) if self.figures else None,
            "cpu_s": self.figures.cpu_s if self.figures else None,
            "connections": self.figures.connections if self.figures else None,
            "details": self.details,
            "notes": self.notes,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_report(
    outcomes: list[Outcome],
    directory: Path,
    context: dict[str, Any],
    *,
    sections: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """results.json (with `extra` at its top level), report.md (with `sections`, Markdown lines,
    after the summary table) and the charts."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(
        json.dumps(
            {"context": context, **(extra or {}), "results": [o.summary() for o in outcomes]},
            indent=2,
            default=str,
        )
        + "\n"
    )
    charts = _charts(outcomes, directory)
    lines = ["# Benchmark report", ""]
    lines += [f"- **{k}**: {v}" for k, v in context.items()]
    lines += [
        "",
        "Load from wrk (keep-alive connections, Lua scripts in benchmarks/lua); each ratio is "
        "the scenario's rate over the rate of the bare reference route doing the least the "
        "scenario needs (benchmarks/reference.py), measured in the same run with the same wrk "
        "settings. Latencies are wrk's (request sent → answer), except for orders: "
        "POST → PAID from the orders' own timestamps.",
        "",
        "| scenario | rate /s | p50 ms | p90 ms | p99 ms | max ms | requests | answers | "
        "reference | ratio | checks |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for o in outcomes:
        w = o.wrk if "steps" not in o.details else None  # orders: latency is POST → PAID
        lines.append(
            f"| {o.name if o.kind == 'scenario' else f'*ref {o.name}*'} | {_num(o.rate)} "
            f"| {_num(o.p50_ms, 2)} | {_num(w.ms('p90') if w else None, 2)} "
            f"| {_num(o.p99_ms, 2)} | {_num(w.ms('max') if w else None, 2)} "
            f"| {o.wrk.requests if o.wrk else '-'} | {_statuses(o.wrk)} | {o.reference or '-'} "
            f"| {_num(o.ratio, 3)} | {'ok' if o.ok else '**FAILED**'} |"
        )
    lines += ["", *(sections or [])]
    lines += ["", *(f"![{title}]({name})" for title, name in charts), ""]
    lines += _cpu_table(outcomes) + _order_cost_table(outcomes) + _connections_table(outcomes)
    lines += ["## Checks and notes", ""]
    for o in outcomes:
        lines.append(f"### {o.kind} {o.name}")
        lines.append("")
        if o.notes:
            lines += [o.notes, ""]
        lines += [f"- {'ok' if c.ok else '**FAILED**'} {c.name}: {c.detail}" for c in o.checks]
        steps = o.details.get("steps")
        if steps:
            lines += ["", *_steps_table(steps)]
        lines.append("")
    report = directory / "report.md"
    report.write_text("\n".join(lines))
    return report


def _statuses(w: WrkResult | None) -> str:
    if w is None:
        return "-"
    errors = {k: n for k, n in w.errors.items() if k != "status" and n}
    return ", ".join(f"{k}: {n}" for k, n in sorted(w.statuses.items())) + (
        f" (socket errors {errors})" if errors else ""
    )


def _cpu_table(outcomes: list[Outcome]) -> list[str]:
    measured = [o for o in outcomes if o.figures]
    if not measured:
        return []
    names = list(dict.fromkeys(n for o in measured if o.figures for n in o.figures.cpu_s))
    rows = []
    for o in measured:
        assert o.figures is not None
        cpu = o.figures.cpu_s
        requests = o.wrk.requests if o.wrk else 0
        per_request = sum(cpu.values()) * 1000 / requests if requests else None
        rows.append(
            [
                o.name,
                f"{o.figures.seconds:.1f}",
                *(f"{cpu.get(n, 0.0):.2f}" for n in names),
                _num(per_request, 3),
            ]
        )
    return _section(
        "CPU seconds per process",
        "User + system time during the scenario (for orders: load and drain), each process "
        "with its children; postgres = the postmaster and every backend; wrk from its rusage.",
        ["scenario", "s", *names, "CPU ms / request"],
        ["---", *["---:"] * (len(names) + 2)],
        rows,
    )


def _order_cost_table(outcomes: list[Outcome]) -> list[str]:
    """CPU ms per PAID order of every order step, total and by process group."""
    steps = [
        (o.name, s)
        for o in outcomes
        for s in o.details.get("steps", [])
        if s.get("cpu_ms_per_paid") is not None
    ]
    if not steps:
        return []
    groups = list(
        dict.fromkeys(n for _, s in steps for n in s.get("cpu_ms_per_paid_by_process", {}))
    )
    harness = [
        n for n in HARNESS if any(n in s.get("harness_cpu_ms_per_paid", {}) for _, s in steps)
    ]
    rows = []
    for name, s in steps:
        by_group, outside = s["cpu_ms_per_paid_by_process"], s["harness_cpu_ms_per_paid"]
        target = "closed loop" if s["target"] is None else f"{s['target']:g}/s"
        rows.append(
            [
                name,
                target,
                str(s["paid"]),
                f"{s['cpu_ms_per_paid']:.2f}",
                *(f"{by_group.get(n, 0.0):.2f}" for n in groups),
                *(f"{outside.get(n, 0.0):.2f}" for n in harness),
            ]
        )
    return _section(
        "CPU milliseconds per PAID order",
        "Each order step's CPU (load and drain) over its PAID orders: the total over the shop's "
        "processes (services and their workers, relay, ranking, stand-in platform, Kafka, "
        "PostgreSQL, Redis, Zipkin when local), then by process group; the harness (wrk, the "
        "bench's own Python, the idle reference app) in the last columns, not in the total.",
        ["scenario", "step", "PAID", "**total**", *groups, *(f"*{n}*" for n in harness)],
        ["---", "---", *["---:"] * (len(groups) + len(harness) + 2)],
        rows,
    )


def _connections_table(outcomes: list[Outcome]) -> list[str]:
    measured = [o for o in outcomes if o.figures]
    if not measured:
        return []
    assert measured[0].figures is not None
    dbs = list(measured[0].figures.connections["opened_still_open"])
    rows = []
    for o in measured:
        assert o.figures is not None
        c = o.figures.connections
        cells = [f"{c['opened_still_open'][d]} / {c['sessions_started'][d]}" for d in dbs]
        rows.append([o.name, *cells, f"{c['backends_before']} → {c['backends_after']}"])
    return _section(
        "PostgreSQL connections opened during each scenario",
        "Per database: connections opened during the scenario and still open at its end "
        "(pg_stat_activity.backend_start) / sessions started (pg_stat_database.sessions, "
        "including those closed again). Backends = every client backend of the server.",
        ["scenario", *dbs, "backends before → after"],
        ["---", *["---:"] * len(dbs), "---"],
        rows,
    )


def _section(
    title: str, about: str, head: list[str], align: list[str], rows: list[list[str]]
) -> list[str]:
    """A section of the report: its title, a paragraph, and a Markdown table (`align` holds each
    column's separator cell: ---: right-aligns it)."""

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    return [
        f"## {title}",
        "",
        about,
        "",
        row(head),
        "|" + "".join(f"{a}|" for a in align),
        *(row(r) for r in rows),
        "",
    ]


def _steps_table(steps: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| target /s | created /s | POST answered /s | PAID /s | orders | PAID | FAILED | pending | "
        "p50 ms | p99 ms | max ms | drain s | CPU ms / PAID | held |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in steps:
        target = "closed" if s["target"] is None else f"{s['target']:g}"
        cost = s.get("cpu_ms_per_paid")
        lines.append(
            f"| {target} | {s['created_per_s']:.1f} | {s['post_rate']:.1f} | {s['paid_per_s']:.1f} | {s['orders']} "
            f"| {s['paid']} | {s['failed']} | {s['pending']} | {s['p50_ms']:.1f} "
            f"| {s['p99_ms']:.1f} | {s['max_ms']:.1f} | {s['drain_s']:.1f} "
            f"| {_num(cost, 2)} | {'yes' if s['held'] else 'no'} |"
        )
    return lines


def _charts(outcomes: list[Outcome], directory: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: list[tuple[str, str]] = []
    by_name = {(o.kind, o.name): o for o in outcomes}

    def save(fig: Any, name: str, title: str) -> None:
        fig.tight_layout()
        fig.savefig(directory / name, dpi=90)
        plt.close(fig)
        charts.append((title, name))

    compared = [o for o in outcomes if o.kind == "scenario" and o.reference and o.rate]
    if compared:
        fig, ax = plt.subplots(figsize=(9, 3.8))
        xs = list(range(len(compared)))
        refs = [by_name[("reference", o.reference or "")].rate or 0.0 for o in compared]
        ax.bar([x - 0.2 for x in xs], [o.rate or 0.0 for o in compared], 0.4, label="service")
        ax.bar([x + 0.2 for x in xs], refs, 0.4, label="bare reference", color="#bbbbbb")
        for x, o in zip(xs, compared, strict=True):
            ax.annotate(f"{o.ratio:.2f}×", (x - 0.2, o.rate or 0.0), ha="center", va="bottom")
        ax.set_xticks(list(xs), [f"{o.name}\n(vs {o.reference})" for o in compared], fontsize=8)
        ax.set_ylabel("requests / s")
        ax.set_title("Throughput vs the bare reference (same wrk settings)")
        ax.legend()
        save(fig, "throughput.png", "throughput vs reference")

    loaded = [o for o in outcomes if o.wrk and o.wrk.requests and "steps" not in o.details]
    if loaded:
        fig, ax = plt.subplots(figsize=(9, 3.8))
        xs = list(range(len(loaded)))
        for offset, key in ((-0.27, "p50"), (0.0, "p90"), (0.27, "p99")):
            ax.bar(
                [x + offset for x in xs],
                [o.wrk.ms(key) if o.wrk else 0.0 for o in loaded],
                0.27,
                label=key,
            )
        ax.set_yscale("log")
        ax.set_xticks(
            list(xs),
            [o.name if o.kind == "scenario" else f"ref {o.name}" for o in loaded],
            fontsize=8,
            rotation=20,
        )
        ax.set_ylabel("ms (log)")
        ax.set_title("HTTP latency seen by wrk")
        ax.legend()
        save(fig, "latency.png", "HTTP latency")

    steps = [s for o in outcomes if o.name == "orders" for s in o.details.get("steps", [])]
    if steps:
        fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 3.8))
        targets = [s["target"] for s in steps]
        lat.plot(targets, [s["p50_ms"] for s in steps], "o-", label="p50")
        lat.plot(targets, [s["p99_ms"] for s in steps], "o-", label="p99")
        limit = steps[0].get("p99_limit_ms")
        if limit:
            lat.axhline(limit, linestyle=":", color="grey", label="p99 limit")
        lat.set_xlabel("offered orders / s")
        lat.set_ylabel("POST → PAID ms")
        lat.set_yscale("log")
        lat.set_title("Order latency vs rate")
        lat.legend()
        thr.plot(targets, targets, ":", color="grey", label="offered")
        thr.plot(targets, [s["created_per_s"] for s in steps], "o-", label="orders created")
        thr.plot(targets, [s["paid_per_s"] for s in steps], "o-", label="PAID")
        thr.set_xlabel("offered orders / s")
        thr.set_ylabel("per second")
        thr.set_title("Order throughput vs rate")
        thr.legend()
        save(fig, "orders.png", "orders: POST→PAID latency and throughput vs rate")

    measured = [o for o in outcomes if o.figures and o.figures.cpu_s]
    if measured:
        names = list(dict.fromkeys(n for o in measured if o.figures for n in o.figures.cpu_s))
        fig, ax = plt.subplots(figsize=(10, 4))
        bottoms = [0.0] * len(measured)
        xs = list(range(len(measured)))
        palette = plt.get_cmap("tab20")
        for i, name in enumerate(names):
            values = [
                (o.figures.cpu_s.get(name, 0.0) / o.figures.seconds)
                if o.figures and o.figures.seconds
                else 0.0
                for o in measured
            ]
            ax.bar(xs, values, 0.6, bottom=bottoms, label=name, color=palette(i % 20))
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        ax.set_xticks(
            xs,
            [o.name if o.kind == "scenario" else f"ref {o.name}" for o in measured],
            fontsize=8,
            rotation=20,
        )
        ax.set_ylabel("cores busy (CPU s / s)")
        ax.set_title("Where the CPU went")
        ax.legend(fontsize=7, ncol=2)
        save(fig, "cpu.png", "CPU per process")
    return charts
