"""The Grafana dashboard queries only metrics the code really exposes, covers what issue 7 asks
to watch, and Prometheus (compose) scrapes every process that serves /metrics."""

import ast
import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from .compose_check import app_services, environment
from .stack_model import ROOT, LocalStack

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "shop-overview.json"
PROMETHEUS = GRAFANA / "prometheus.yml"
SOURCES = [ROOT / "libs", ROOT / "services", ROOT / "deploy" / "standin"]
CONSTRUCTORS = {"Counter", "Gauge", "Histogram", "Summary"}
# Issue 7: HTTP latency histograms, saga outcomes by reason, outbox backlog and age, consumer lag,
# coupon gate admits/rejects, relay deliveries.
MUST_WATCH = {
    "http_request_duration_seconds_bucket",
    "saga_orders_total",
    "outbox_backlog",
    "outbox_oldest_age_seconds",
    "consumer_lag",
    "dead_lettered_total",
    "coupon_issue_requests_total",
    "dataplatform_delivered_total",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
PROMQL_WORDS |= {"unless", "bool", "offset", "inf", "nan"}


def declared_metrics() -> dict[str, str]:
    """Every prometheus_client metric constructed in the source (tests excluded): name → kind."""
    return dict(_declared_metrics(tuple(SOURCES)))


@functools.cache
def _declared_metrics(roots: tuple[Path, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "tests" in path.relative_to(ROOT).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                kind = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                name = node.args[0] if node.args else None
                if kind in CONSTRUCTORS and isinstance(name, ast.Constant):
                    found[str(name.value)] = kind
    return found


def exposed_series(declared: dict[str, str]) -> set[str]:
    """The series names Prometheus sees for them (prometheus_client's suffixes)."""
    series = set()
    for name, kind in declared.items():
        base = name.removesuffix("_total") if kind == "Counter" else name
        if kind == "Counter":
            series |= {f"{base}_total", f"{base}_created"}
        elif kind == "Gauge":
            series.add(base)
        elif kind == "Histogram":
            series |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
        else:
            series |= {f"{base}_sum", f"{base}_count", f"{base}_created"}
    return series


def promql_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names or matchers, durations or dashboard variables."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return panels


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def test_promql_metric_names_are_found() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (service, le) (rate(http_request_duration_seconds_bucket{service=~"$service", status=~"5.."}[$__rate_interval])))'
        " / ignoring(le) sum(outbox_backlog) and on(job) up offset 5m"
    )
    assert promql_metrics(expr) == {"http_request_duration_seconds_bucket", "outbox_backlog", "up"}


def test_declared_metrics_are_read_from_the_source() -> None:
    declared = declared_metrics()
    assert declared["http_request_duration_seconds"] == "Histogram"
    assert "outbox_published_total" in exposed_series(declared)
    assert "http_request_duration_seconds_bucket" in exposed_series(declared)


def test_every_metric_in_the_dashboard_exists_in_the_code() -> None:
    exposed = exposed_series(declared_metrics())
    used = {name for expr in dashboard_exprs() for name in promql_metrics(expr)}
    assert used, "no metric found in the dashboard"
    assert sorted(used - exposed) == []


def test_the_dashboard_watches_what_issue_7_asks_for() -> None:
    used = {name for expr in dashboard_exprs() for name in promql_metrics(expr)}
    assert sorted(MUST_WATCH - used) == []


def test_a_renamed_metric_is_reported() -> None:
    declared = declared_metrics()
    declared["outbox_pending"] = declared.pop("outbox_backlog")
    used = {name for expr in dashboard_exprs() for name in promql_metrics(expr)}
    assert "outbox_backlog" in used - exposed_series(declared)


def test_the_dashboard_is_well_formed() -> None:
    doc = json.loads(DASHBOARD.read_text())
    panels = dashboard_panels()
    assert doc["uid"] == "shop-overview"
    assert len({p["id"] for p in panels}) == len(panels)
    variables = {v["name"] for v in doc["templating"]["list"]}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for variable in re.findall(r"\$(?!__)(\w+)", target["expr"]):
                assert variable in variables, (panel["title"], variable)


def test_prometheus_scrapes_every_compose_process_that_serves_metrics(stack: LocalStack) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    [shop] = [job for job in config["scrape_configs"] if job["job_name"] == "shop"]
    scraped = {
        (target, group["labels"]["service"])
        for group in shop["static_configs"]
        for target in group["targets"]
    }
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    expected = set()
    for name, module in app_services(compose).items():
        process = stack.process(module)
        known = stack.env.get(module, {})
        # shopkit's create_app serves /metrics: every process with Settings and an HTTP port.
        if process and process.port and process.port_var in known and "LOG_JSON" in known:
            port = environment(compose["services"][name])[process.port_var]
            expected.add((f"{name}:{port}", name))
    assert scraped == expected


def test_grafana_is_provisioned_with_the_dashboard_and_prometheus() -> None:
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "shop.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts
