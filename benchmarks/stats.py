"""Latency statistics and the report (Markdown + JSON + PNG charts) of a benchmark run."""

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    statuses: dict[str, int]
    notes: str = ""

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "throughput_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 1),
            "p95_ms": round(self.percentile(95), 1),
            "p99_ms": round(self.percentile(99), 1),
            "max_ms": round(max(self.latencies_ms, default=0.0), 1),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 1) if self.latencies_ms else 0.0,
            "statuses": self.statuses,
            "notes": self.notes,
        }


def print_table(results: list[Result]) -> None:
    header = (
        f"{'scenario':<34}{'n':>7}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  statuses"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        s = r.summary()
        print(
            f"{r.name:<34}{r.requests:>7}{s['throughput_per_s']:>9}{s['p50_ms']:>9}"
            f"{s['p95_ms']:>9}{s['p99_ms']:>9}  {r.statuses}"
        )


def write_report(results: list[Result], directory: Path, context: dict[str, object]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(
        json.dumps({"context": context, "results": [r.summary() for r in results]}, indent=2)
    )
    lines = [
        "# Benchmark report",
        "",
        "| " + " | ".join(f"{k}: {v}" for k, v in context.items()) + " |",
        "",
        "| scenario | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        s = r.summary()
        lines.append(
            f"| {r.name} | {r.requests} | {s['throughput_per_s']} | {s['p50_ms']} | {s['p95_ms']} "
            f"| {s['p99_ms']} | {s['max_ms']} | {r.statuses} |"
        )
    lines.append("")
    for r in results:
        if not r.latencies_ms:
            continue
        slug = r.name.replace(" ", "_").replace("/", "_")
        fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 3.6))
        hist.hist(r.latencies_ms, bins=60, color="#3b6ea5")
        hist.set_xlabel("latency (ms)")
        hist.set_ylabel("requests")
        hist.set_title(f"{r.name}: latency histogram")
        ordered = sorted(r.latencies_ms)
        cdf.plot(ordered, [i / len(ordered) * 100 for i in range(len(ordered))], color="#a53b3b")
        for p in (50, 95, 99):
            cdf.axvline(r.percentile(p), linestyle=":", color="grey")
        cdf.set_xlabel("latency (ms)")
        cdf.set_ylabel("percentile")
        cdf.set_title("latency CDF (p50/p95/p99 dotted)")
        fig.tight_layout()
        fig.savefig(directory / f"{slug}.png", dpi=90)
        plt.close(fig)
        lines += [f"## {r.name}", "", r.notes, "", f"![{r.name}]({slug}.png)", ""]
    report = directory / "report.md"
    report.write_text("\n".join(lines))
    return report
