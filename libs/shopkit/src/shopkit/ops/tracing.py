"""Distributed tracing with OpenTelemetry, configured by its standard variables:

- `OTEL_TRACES_EXPORTER`: `none` (the default: tracing off), `otlp` (to a collector,
  `OTEL_EXPORTER_OTLP_ENDPOINT`), `zipkin` (`OTEL_EXPORTER_ZIPKIN_ENDPOINT`) or `console`;
- `OTEL_SERVICE_NAME` (default: the service's own name), `OTEL_TRACES_SAMPLER` and
  `OTEL_TRACES_SAMPLER_ARG`, `OTEL_SDK_DISABLED`.

Off, nothing is instrumented and OpenTelemetry's API is a no-op: tracing costs nothing.

On, the sampler is by default `parentbased_traceidratio` at `DEFAULT_RATIO` (1 %), not the SDK's
`parentbased_always_on`: a request that arrives without a trace context starts a recorded trace
once in a hundred, and one that arrives with a `traceparent` follows that header's sampled flag
whatever the ratio. Sending a request with a sampled `traceparent` (`00-<32 hex>-<16 hex>-01`) is
how it is traced on demand; its trace keeps the header's trace id. A ratio sampler named without
`OTEL_TRACES_SAMPLER_ARG` takes `DEFAULT_RATIO` too (the SDK would take 1.0).

Only a request or an event starts a trace: database and Redis calls made outside any span (the
outbox's fallback poll, housekeeping) are never sampled, so they cannot fill the viewer with
one-span traces.

A trace crosses Kafka through the outbox: the W3C trace context of the transaction that staged an
event (`carrier()`) is stored with its outbox row, the relay sends it as Kafka headers
(`kafka_headers()`), and each consumer continues it (`context_of(headers)`), so one order's trace
runs from its POST through every saga step.
"""

import os
import random
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceState,
)
from opentelemetry.util.types import Attributes
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

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

DEFAULT_SAMPLER = "parentbased_traceidratio"
DEFAULT_RATIO = 0.01
"""The share of the requests without a trace context that start a recorded trace, unless
OTEL_TRACES_SAMPLER_ARG says otherwise."""

_enabled = False
_provider: Any = None
_sampler: "_NoBackgroundRoots | None" = None
_root_bound: int | None = None
"""With a ratio sampler, the bound a new trace id's low 64 bits must fall under to be sampled
(TraceIdRatioBased's rule): `server_span` decides a request's root itself (see there)."""
_ROOT_SAMPLED = otel_context.create_key("shopkit.root-sampled")


def enabled() -> bool:
    return _enabled


def configure_tracing(service_name: str, *, exporter: Any = None) -> bool:
    """Sets up the SDK once per process, when an exporter is
    configured (or given: tests pass an in-memory one); True when tracing is on. The sampler
    is read from the environment at every call, so a test can turn tracing on again with
    another one (the provider itself is set once per process)."""
    global _enabled, _provider, _sampler, _root_bound
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

    inner = _configured_sampler()
    _root_bound = _configured_root_bound()
    if _provider is None:
        name = os.environ.get("OTEL_SERVICE_NAME", service_name)
        _sampler = _NoBackgroundRoots(inner)
        _provider = TracerProvider(
            resource=Resource.create({"service.name": name}), sampler=_sampler
        )
        trace.set_tracer_provider(_provider)
    else:  # on again after shutdown_tracing (tests): the sampler as configured now
        assert _sampler is not None
        _sampler.inner = inner
    if exporter is not None:
        _provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in names:
        _provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    _enabled = True
    return True


def shutdown_tracing() -> None:
    """Stops tracing in this process (tests): no span is started any more."""
    global _enabled
    _enabled = False


_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def _sampler_setting() -> tuple[str, float | None]:
    """OTEL_TRACES_SAMPLER and, for a ratio sampler, its ratio (OTEL_TRACES_SAMPLER_ARG), checked:
    the SDK alone would trace every request (always_on) after a typo in either, which a
    production deployment must not do."""
    name = os.environ.get("OTEL_TRACES_SAMPLER", DEFAULT_SAMPLER).strip().lower() or DEFAULT_SAMPLER
    if name not in _SAMPLERS:
        raise ValueError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r} ({', '.join(_SAMPLERS)})")
    if not name.endswith("traceidratio"):
        return name, None
    raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or str(DEFAULT_RATIO)
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: {raw!r} is not a ratio in [0, 1]")
    return name, ratio


def _configured_sampler() -> sampling.Sampler:
    name, ratio = _sampler_setting()
    if ratio is not None:
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


def _configured_root_bound() -> int | None:
    """With a ratio sampler, the bound under which a new trace id's low 64 bits are sampled
    (TraceIdRatioBased's rule); None with the others."""
    _, ratio = _sampler_setting()
    return None if ratio is None else sampling.TraceIdRatioBased.get_bound_for_rate(ratio)


class _NoBackgroundRoots(sampling.Sampler):
    """A sampler that never starts a trace at a client call (a statement, a Redis command, an
    outgoing HTTP request made outside any span), records a request root that `server_span`
    has already sampled, and asks `inner` about everything else."""

    def __init__(self, inner: sampling.Sampler) -> None:
        self.inner = inner

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
        if parent_context is not None and parent_context.get(_ROOT_SAMPLED):
            return sampling.SamplingResult(sampling.Decision.RECORD_AND_SAMPLE)
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == SpanKind.CLIENT and not parent.is_valid:
            return sampling.SamplingResult(sampling.Decision.DROP)
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoBackgroundRoots{{{self.inner.get_description()}}}"


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


_traced_engines: "weakref.WeakSet[Any]" = weakref.WeakSet()
_UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def server_span(scope: Mapping[str, Any]) -> AbstractContextManager[Span | None]:
    """The span of one HTTP request (ASGI scope), continuing the caller's `traceparent`; None
    when tracing is off or for the probes. Named and given its status by `finish_server_span`.

    Ours rather than OpenTelemetry's ASGI middleware: that one wraps every receive and send in
    spans of their own, which cost a tenth of a service's CPU even for requests not sampled."""
    if not _enabled or scope.get("path") in _UNTRACED_PATHS:
        return nullcontext()
    found = {
        key.decode("latin-1"): value.decode("latin-1")
        for key, value in scope.get("headers") or ()
        if key in (b"traceparent", b"tracestate")
    }
    parent = propagate.extract(found) if found else None
    if parent is None and _root_bound is not None:
        # A new trace under a ratio sampler: decided here, by the id it gets, as the SDK's
        # sampler would. The 99 % not sampled only get a non-recording context (their trace id
        # for logs and X-Trace-Id, carried on unsampled to the events they stage), not an SDK
        # span each: that costs a twelfth of a product read's CPU, this a fiftieth.
        trace_id = random.getrandbits(128) or 1
        if trace_id & sampling.TraceIdRatioBased.TRACE_ID_LIMIT >= _root_bound:
            unsampled = SpanContext(trace_id, random.getrandbits(64) or 1, is_remote=False)
            return _current(trace.set_span_in_context(NonRecordingSpan(unsampled)))
        parent = otel_context.set_value(_ROOT_SAMPLED, True)
    elif parent is not None and not _sampled(parent):
        return _current(parent)  # carried on unsampled, as consumer_span does
    return tracer.start_as_current_span(
        scope.get("method", "HTTP"), context=parent, kind=SpanKind.SERVER
    )


def finish_server_span(span: Span | None, method: str, route: str, status: int) -> None:
    if span is None or not span.is_recording():
        return
    span.update_name(f"{method} {route}")
    span.set_attributes(
        {"http.request.method": method, "http.route": route, "http.response.status_code": status}
    )
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


_SPAN_KEY = "shopkit.span"


def instrument_engine(engine: AsyncEngine) -> None:
    """A client span per SQL statement, inside the current span, only when that one is recorded
    (a sampled request or event): an unsampled one pays a context lookup per statement. The
    open span waits in the connection's `info` dict (SQLAlchemy's place for user data on a
    connection; one statement at a time runs on a connection)."""
    sync = engine.sync_engine
    if not _enabled or sync in _traced_engines:
        return
    _traced_engines.add(sync)

    @event.listens_for(sync, "before_cursor_execute")
    def _started(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if trace.get_current_span().is_recording():
            conn.info[_SPAN_KEY] = tracer.start_span(
                statement.split(None, 1)[0] if statement else "SQL",
                kind=SpanKind.CLIENT,
                attributes={"db.system": "postgresql", "db.statement": statement[:2_000]},
            )

    @event.listens_for(sync, "after_cursor_execute")
    def _done(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        span = conn.info.pop(_SPAN_KEY, None)
        if span is not None:
            span.end()

    @event.listens_for(sync, "handle_error")
    def _failed(error: Any) -> None:
        connection = error.connection
        span = None if connection is None else connection.info.pop(_SPAN_KEY, None)
        if span is not None:
            span.record_exception(error.original_exception)
            span.set_status(Status(StatusCode.ERROR))
            span.end()


@contextmanager
def client_span(name: str, attributes: Attributes) -> Iterator[None]:
    """A client span (a statement, a Redis command) inside the current span, only when that one
    is recorded: an unsampled request pays one context lookup. OpenTelemetry's Redis
    instrumentation made a span per command even then, a tenth of a sold-out coupon issue's
    CPU at 1 % sampling."""
    if not _enabled or not trace.get_current_span().is_recording():
        yield
        return
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
        yield


def statement_span(statement: str) -> AbstractContextManager[None]:
    """A client span around a statement the driver runs itself (shopkit.database.engine.Prepared), as the
    engine's statements get: only inside a recorded span."""
    return client_span(
        statement.split(None, 1)[0] if statement else "SQL",
        {"db.system": "postgresql", "db.statement": statement[:2_000]},
    )


@contextmanager
def http_client_span(method: str, url: str, headers: dict[str, str]) -> Iterator[Span | None]:
    """A client span around an HTTP request made without an instrumented client (the relay's
    aiohttp POST), with the trace context put into `headers`; only inside a recorded span."""
    if not _enabled or not trace.get_current_span().is_recording():
        yield None
        return
    with tracer.start_as_current_span(
        method,
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": method, "url.full": url},
    ) as span:
        propagate.inject(headers)
        yield span


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


def consumer_span(
    name: str,
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
    topic: str,
    attributes: Callable[[], Mapping[str, str]] = dict,
) -> AbstractContextManager[Any]:
    """The span of handling one Kafka message, continuing the trace its headers carry (a child of
    the span that staged it). A message of a trace that is not sampled gets no span: its context
    is only made current, so the events the handler emits carry the same unsampled trace on (and
    no later step starts a trace of its own) at the cost of a context switch."""
    if not _enabled:
        return nullcontext()
    parent = context_of(headers)
    if parent is not None and not _sampled(parent):
        return _current(parent)
    return tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            **attributes(),
        },
    )


def _sampled(context: Context) -> bool:
    """False for the context of a trace the edge decided not to sample."""
    upstream = trace.get_current_span(context).get_span_context()
    return not upstream.is_valid or upstream.trace_flags.sampled


@contextmanager
def _current(context: Context) -> Iterator[None]:
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def current_trace_id() -> str | None:
    """The current span's trace id (hex), for logs and response headers; None outside one."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
