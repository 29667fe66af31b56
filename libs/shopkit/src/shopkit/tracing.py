"""Distributed tracing with OpenTelemetry, configured by its standard variables:

- `OTEL_TRACES_EXPORTER`: `none` (the default: tracing off), `otlp` (to a collector,
  `OTEL_EXPORTER_OTLP_ENDPOINT`), `zipkin` (`OTEL_EXPORTER_ZIPKIN_ENDPOINT`) or `console`;
- `OTEL_SERVICE_NAME` (default: the service's own name), `OTEL_TRACES_SAMPLER` and
  `OTEL_TRACES_SAMPLER_ARG` (e.g. `parentbased_traceidratio` and `0.1`), `OTEL_SDK_DISABLED`.

Off, nothing is instrumented and OpenTelemetry's API is a no-op: tracing costs nothing.

Only a request or an event starts a trace: database and Redis calls made outside any span (the
outbox's fallback poll, housekeeping) are never sampled, so they cannot fill the viewer with
one-span traces. A request that arrives with a sampled `traceparent` is traced whatever the
ratio (the `parentbased_*` samplers): that is how one request is traced on demand.

A trace crosses Kafka through the outbox: the W3C trace context of the transaction that staged an
event (`carrier()`) is stored with its outbox row, the relay sends it as Kafka headers
(`kafka_headers()`), and each consumer continues it (`context_of(headers)`), so one order's trace
runs from its POST through every saga step.
"""

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

tracer = trace.get_tracer("shopkit")

ENVIRONMENT = (
    # read here
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
    # read by the OpenTelemetry SDK and its exporters
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
)
"""The variables a deployment may set for tracing, in every process (the deploy checks know them)."""

_enabled = False
_provider: Any = None


def enabled() -> bool:
    return _enabled


def configure_tracing(service_name: str, *, exporter: Any = None) -> bool:
    """Sets up the SDK and the library instrumentations once per process, when an exporter is
    configured (or given: tests pass an in-memory one); True when tracing is on."""
    global _enabled, _provider
    if _enabled:
        return True
    names = [
        name.strip()
        for name in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")
        if name.strip() and name.strip() != "none"
    ]
    if exporter is None and (
        not names or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
    ):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if _provider is None:
        name = os.environ.get("OTEL_SERVICE_NAME", service_name)
        _provider = TracerProvider(
            resource=Resource.create({"service.name": name}),
            sampler=_NoBackgroundRoots(_configured_sampler()),
        )
        trace.set_tracer_provider(_provider)
    if exporter is not None:
        _provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in names:
        _provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    for instrumentor in _instrumentors():
        instrumentor.instrument()
    _enabled = True
    return True


def shutdown_tracing() -> None:
    """Stops tracing in this process (tests): the libraries are no longer instrumented."""
    global _enabled
    for instrumentor in _instrumentors():
        instrumentor.uninstrument()
    _enabled = False


_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def _configured_sampler() -> sampling.Sampler:
    """OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, checked: the SDK alone would trace every
    request (always_on) after a typo in either, which a production deployment must not do."""
    name = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name not in _SAMPLERS:
        raise ValueError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r} ({', '.join(_SAMPLERS)})")
    if name.endswith("traceidratio"):
        raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: {raw!r} is not a ratio in [0, 1]")
        return (
            sampling.ParentBasedTraceIdRatio(ratio)
            if name.startswith("parentbased")
            else sampling.TraceIdRatioBased(ratio)
        )
    return {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
    }[name]


class _NoBackgroundRoots(sampling.Sampler):
    """A sampler that never starts a trace at a client call (a statement, a Redis command, an
    outgoing HTTP request made outside any span) and asks `inner` about everything else."""

    def __init__(self, inner: sampling.Sampler) -> None:
        self._inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> sampling.SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == SpanKind.CLIENT and not parent.is_valid:
            return sampling.SamplingResult(sampling.Decision.DROP)
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoBackgroundRoots{{{self._inner.get_description()}}}"


def _instrumentors() -> list[Any]:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    return [AsyncPGInstrumentor(), HTTPXClientInstrumentor(), RedisInstrumentor()]  # type: ignore[no-untyped-call]


def _exporter(name: str) -> Any:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "zipkin":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        return ZipkinExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ValueError(
        f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (none, otlp, zipkin, console)"
    )


def instrument_app(app: Any) -> None:
    """Server spans for every HTTP request of a FastAPI app (when tracing is on)."""
    if _enabled:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")


def carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers (`traceparent`, `tracestate`), or None outside
    a sampled trace: what an outbox row keeps for the relay."""
    if not _enabled:
        return None
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers or None


def kafka_headers(context: Mapping[str, str] | None) -> list[tuple[str, bytes]]:
    return [(key, value.encode()) for key, value in (context or {}).items()]


def context_of(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> Context | None:
    """The trace context a Kafka message carries, to continue it; None when it carries none."""
    if not _enabled or not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found = {key: value.decode(errors="replace") for key, value in pairs if key in _FIELDS}
    return propagate.extract(found) if found else None


_FIELDS = frozenset({"traceparent", "tracestate", "baggage"})


def current_trace_id() -> str | None:
    """The current span's trace id (hex), for logs and response headers; None outside one."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
