"""BENCH_AB=<commit>: the cost of an order on an earlier commit (A) and on the working tree (B),
one after the other on the same machine, side by side.

The commit is checked out into a git worktree, .local/bench-ab/<sha> (reused when present), with
its own .venv (`uv sync --frozen --all-packages`). Each side is a whole run of the orders-wait
scenario and its reference (/win): the shop started afresh, from that side's code, by this
tree's harness (benchmarks.system.start with the side's Source) with the same environment (the
variables the services read are the same for recent commits); the reference app, wrk and the
checks are this tree's on both sides. BENCH_AB_ROUNDS=n runs A, B n times (A, B, A, B, …) so
that a drift of the machine falls on both; each figure is the median over the rounds."""

import os
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import Outcome
from benchmarks.system import ROOT, Source

AB_DIR = ROOT / ".local" / "bench-ab"
MODULES = (
    "point",
    "product",
    "coupon",
    "order",
    "order.relay",
    "ranking",
    "ranking.workers",
    "dataplatform_standin",
)
"""what benchmarks.system.start runs with `python -m` from the side's code"""


def _git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"BENCH_AB: git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def checkout(commit: str) -> Source:
    """The commit's worktree under .local/bench-ab/<sha>, synced, ready to run the shop."""
    sha = _git("rev-parse", "--verify", f"{commit}^{{commit}}")
    path = AB_DIR / sha
    if not (path / ".git").exists() or _git("rev-parse", "HEAD", cwd=path) != sha:
        if path.exists():
            shutil.rmtree(path)
        _git("worktree", "prune")
        AB_DIR.mkdir(parents=True, exist_ok=True)
        _git("worktree", "add", "--detach", str(path), sha)
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("BENCH_AB: uv is not on PATH (run through `make bench` or `uv run`)")
    # uv must sync the worktree's own .venv, not the one this process runs in
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    synced = subprocess.run(
        [uv, "sync", "--frozen", "--all-packages", "--quiet"],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if synced.returncode != 0:
        raise SystemExit(f"BENCH_AB: uv sync in {path} failed: {synced.stderr.strip()}")
    python = path / ".venv" / "bin" / "python"
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, sys; "
            "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))",
            *MODULES,
        ],
        cwd=path,
        env={**env, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    missing = probe.stdout.strip()
    if probe.returncode != 0 or missing:
        raise SystemExit(
            f"BENCH_AB: {commit} ({sha[:10]}) cannot run the shop as this harness starts it: "
            f"{'missing modules ' + missing if missing else probe.stderr.strip()}"
        )
    return Source(path, str(python), f"{commit} ({sha[:10]})")


def working_tree_label() -> str:
    head = _git("rev-parse", "--short=10", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"working tree ({head}{' + changes' if dirty else ''})"


@dataclass(frozen=True)
class Side:
    """One run of orders-wait on one side (or the medians of several)."""

    paid_per_s: float | None
    reference_rate: float | None
    ratio: float | None
    p50_ms: float | None
    p99_ms: float | None
    cpu_ms_per_paid: float | None
    by_group: dict[str, float] = field(default_factory=dict)
    harness: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    rounds: tuple[float | None, ...] = ()
    """CPU ms per PAID order of each round (medians only)"""

    @classmethod
    def of(cls, outcome: Outcome, reference: Outcome | None) -> "Side":
        cost = outcome.cost
        return cls(
            paid_per_s=outcome.rate,
            reference_rate=reference.rate if reference else None,
            ratio=outcome.ratio,
            p50_ms=outcome.p50_ms,
            p99_ms=outcome.p99_ms,
            cpu_ms_per_paid=cost.total_ms if cost else None,
            by_group=dict(cost.by_group) if cost else {},
            harness=dict(cost.harness) if cost else {},
            ok=outcome.ok and (reference is None or reference.ok),
        )

    def summary(self) -> dict[str, Any]:
        return {
            "paid_per_s": self.paid_per_s,
            "reference_rate": self.reference_rate,
            "ratio": self.ratio,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "cpu_ms_per_paid": self.cpu_ms_per_paid,
            "cpu_ms_per_paid_by_process": self.by_group,
            "harness_cpu_ms_per_paid": self.harness,
            "ok": self.ok,
            "cpu_ms_per_paid_each_round": list(self.rounds),
        }


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _median_map(maps: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key, the median over every round (a round without the key counts 0)."""
    keys = list(dict.fromkeys(k for m in maps for k in m))
    medians = {k: statistics.median([m.get(k, 0.0) for m in maps]) for k in keys}
    return dict(sorted(medians.items(), key=lambda kv: -kv[1]))


def median(sides: Sequence[Side]) -> Side:
    if not sides:
        raise ValueError("no run to take the median of")
    return Side(
        paid_per_s=_median([s.paid_per_s for s in sides]),
        reference_rate=_median([s.reference_rate for s in sides]),
        ratio=_median([s.ratio for s in sides]),
        p50_ms=_median([s.p50_ms for s in sides]),
        p99_ms=_median([s.p99_ms for s in sides]),
        cpu_ms_per_paid=_median([s.cpu_ms_per_paid for s in sides]),
        by_group=_median_map([s.by_group for s in sides]),
        harness=_median_map([s.harness for s in sides]),
        ok=all(s.ok for s in sides),
        rounds=tuple(s.cpu_ms_per_paid for s in sides),
    )


def b_over_a(a: float | None, b: float | None) -> float | None:
    return b / a if a and b is not None else None


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(a: Side, b: Side, labels: tuple[str, str]) -> list[str]:
    """The comparison as a Markdown table: A, B and B/A for each figure; the CPU per PAID
    order in total, then by process group (A's largest first), then the harness (not counted)."""

    def row(name: str, x: float | None, y: float | None, digits: int, bold: bool = False) -> str:
        ratio = _cell(b_over_a(x, y), 3)
        if bold and ratio != "-":
            ratio = f"**{ratio}**"
        return f"| {name} | {_cell(x, digits)} | {_cell(y, digits)} | {ratio} |"

    groups = list(dict.fromkeys([*a.by_group, *b.by_group]))
    harness = list(dict.fromkeys([*a.harness, *b.harness]))
    lines = [
        f"| orders-wait | A: {labels[0]} | B: {labels[1]} | B/A |",
        "|---|---:|---:|---:|",
        row("PAID orders / s", a.paid_per_s, b.paid_per_s, 1),
        row("reference /win req/s", a.reference_rate, b.reference_rate, 1),
        row("ratio to the reference", a.ratio, b.ratio, 4),
        row("POST→PAID p50 ms", a.p50_ms, b.p50_ms, 1),
        row("POST→PAID p99 ms", a.p99_ms, b.p99_ms, 1),
        row("**CPU ms per PAID order**", a.cpu_ms_per_paid, b.cpu_ms_per_paid, 2, bold=True),
        *(row(f"· {g}", a.by_group.get(g), b.by_group.get(g), 2) for g in groups),
        *(
            row(f"· *{h} (harness, not counted)*", a.harness.get(h), b.harness.get(h), 2)
            for h in harness
        ),
    ]
    if len(a.rounds) > 1 or len(b.rounds) > 1:
        each = [", ".join(_cell(v, 2) for v in s.rounds) for s in (a, b)]
        lines.append(f"| CPU ms per PAID order, each round | {each[0]} | {each[1]} | |")
    lines.append(f"| checks | {'ok' if a.ok else 'FAILED'} | {'ok' if b.ok else 'FAILED'} | |")
    return lines


def line(a: Side, b: Side) -> str:
    """`ab cpu/order: A=<ms>ms B=<ms>ms B/A=<x> paid/s: A=… B=… ratio: A=… B=…`"""
    return (
        f"ab cpu/order: A={_cell(a.cpu_ms_per_paid, 2)}ms B={_cell(b.cpu_ms_per_paid, 2)}ms"
        f" B/A={_cell(b_over_a(a.cpu_ms_per_paid, b.cpu_ms_per_paid), 3)}"
        f" paid/s: A={_cell(a.paid_per_s, 1)} B={_cell(b.paid_per_s, 1)}"
        f" ratio: A={_cell(a.ratio, 4)} B={_cell(b.ratio, 4)}"
        f" {'ok' if a.ok and b.ok else 'FAILED'}"
    )
