"""One trace across Kafka: the span of the transaction that stages an event is continued by the
consumer that handles it, through the outbox row and the Kafka headers (W3C traceparent); the
events that step emits carry the trace on. Off (the default), nothing is added anywhere."""

import asyncio
import random
import secrets
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, PaymentCompleted, PaymentFailed, topics
from shopkit.database.engine import OutboxRow
from shopkit.database.uow import UnitOfWork
from shopkit.http.app import RequestContextMiddleware
from shopkit.messaging.outbox import OutboxRelay
from shopkit.ops import tracing
from shopkit.ops.deadletters import read_all, replay
from shopkit.settings import ServiceSettings
from shopkit.testing import collect, eventually, topic_reader
from shopkit.testing.plugin import StartConsumer

DROP = sampling.Decision.DROP
SAMPLED = sampling.Decision.RECORD_AND_SAMPLE


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, every new trace sampled (these tests start their traces themselves)."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing("kit-test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


@pytest.fixture
def sampled_on_demand(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on with the default sampler at ratio 0: only a request that asks is traced."""
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing("kit-test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


def test_off_by_default_nothing_is_carried() -> None:
    assert not tracing.enabled()
    with tracing.tracer.start_as_current_span("untraced"):
        assert tracing.carrier() is None
    assert (
        tracing.context_of([("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")])
        is None
    )


async def test_a_trace_crosses_kafka_through_the_outbox(
    settings: ServiceSettings,
    sessions: async_sessionmaker[AsyncSession],
    spans: InMemorySpanExporter,
    consumer: StartConsumer,
) -> None:
    tracing.instrument_engine(sessions.kw["bind"])  # made before tracing was on
    order_id = uuid.uuid4()
    handled = asyncio.Event()

    async def step(uow: UnitOfWork, payment: PaymentCompleted, _: Envelope) -> None:
        await uow.session.execute(text("SELECT 1"))  # the step's own statement
        uow.emit(
            PaymentFailed(
                order_id=payment.order_id, user_id=1, amount=1, reason="INSUFFICIENT_BALANCE"
            )
        )
        uow.after_commit(handled.set)

    # A request's span stages an event.
    with tracing.tracer.start_as_current_span("POST /orders") as request:
        async with UnitOfWork(sessions, "kit") as uow:
            uow.emit(PaymentCompleted(order_id=order_id, user_id=1, amount=1, balance_after=0))
            await uow.commit()
    root = request.get_span_context()
    trace_id = format(root.trace_id, "032x")
    async with sessions() as s:
        [stored] = (await s.scalars(select(OutboxRow.trace_context))).all()
    assert stored is not None
    assert stored["traceparent"].split("-")[1] == trace_id

    async with (
        consumer(
            {PaymentCompleted: step},
            group_id="kit-trace",
            topics=[topics.PAYMENT_EVENTS],
        ) as producer,
        topic_reader(settings.topic(topics.PAYMENT_EVENTS)) as reader,
    ):
        relay = OutboxRelay(settings, sessions, producer)
        assert await relay.publish_batch() == 1
        await asyncio.wait_for(handled.wait(), 30)
        assert await relay.publish_batch() == 1  # the step's own event
        records = await collect(reader, lambda seen: len(seen) >= 2)

    # Both messages carry the one trace.
    for record in records:
        traceparent = dict(record.headers)["traceparent"].decode()
        assert traceparent.split("-")[1] == trace_id
    # The consumer's span continues the request's: same trace, the request's span its parent.
    [processed] = [s for s in spans.get_finished_spans() if s.name == "PaymentCompleted process"]
    assert format(processed.context.trace_id, "032x") == trace_id
    assert processed.parent is not None
    assert processed.parent.span_id == root.span_id
    assert processed.attributes is not None
    assert processed.attributes["shop.order_id"] == str(order_id)
    # ... and the event it emitted was staged inside it.
    second = dict(records[-1].headers)["traceparent"].decode()
    assert second.split("-")[2] == format(processed.context.span_id, "016x")
    # The database statements of the step are in the trace too (asyncpg instrumented).
    assert any(
        s.context.trace_id == root.trace_id
        and s.parent
        and s.parent.span_id == processed.context.span_id
        for s in spans.get_finished_spans()
        if s.name != "PaymentCompleted process"
    )


def test_only_a_request_or_an_event_starts_a_trace() -> None:
    """Background statements (a poll outside any span) never start one; a request does, and
    a statement inside a sampled span is in it."""
    sampler = tracing._NoBackgroundRoots(sampling.ALWAYS_ON)
    trace_id = 0x1234
    assert sampler.should_sample(None, trace_id, "SELECT", SpanKind.CLIENT).decision == DROP
    assert (
        sampler.should_sample(None, trace_id, "POST /orders", SpanKind.SERVER).decision == SAMPLED
    )
    assert sampler.should_sample(None, trace_id, "X process", SpanKind.CONSUMER).decision == SAMPLED
    parent = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(trace_id, 0x99, is_remote=True, trace_flags=TraceFlags(1)))
    )
    assert sampler.should_sample(parent, trace_id, "SELECT", SpanKind.CLIENT).decision == SAMPLED


@pytest.mark.parametrize(
    ("sampler", "arg"),
    [("always-on", None), ("parentbased_traceidratio", "ten percent"), ("traceidratio", "1.5")],
)
def test_a_mistyped_sampler_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, sampler: str, arg: str | None
) -> None:
    """The SDK alone would fall back to tracing everything, which production must not do."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER"):
        tracing._configured_sampler()


def test_the_production_ratio_samples_that_share_of_new_traces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    sampler = tracing._configured_sampler()
    ids = [random.getrandbits(128) for _ in range(20_000)]
    sampled = sum(
        sampler.should_sample(None, i, "POST /orders", SpanKind.SERVER).decision == SAMPLED
        for i in ids
    )
    assert 1_700 < sampled < 2_300


def test_the_default_samples_a_hundredth_and_follows_a_traceparent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unset, the sampler is parent-based at DEFAULT_RATIO: a new trace is sampled when its id
    falls in the lowest hundredth (TraceIdRatioBased's rule, on the id's low 64 bits); a trace
    that arrives follows its sampled flag, whatever its id."""
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
    assert tracing.DEFAULT_RATIO == 0.01
    sampler = tracing._configured_sampler()
    bound = sampling.TraceIdRatioBased.get_bound_for_rate(0.01)
    inside, outside = (7 << 64) | (bound - 1), (7 << 64) | bound

    def decision(trace_id: int, parent_flags: int | None = None) -> sampling.Decision:
        parent = (
            None
            if parent_flags is None
            else trace.set_span_in_context(
                NonRecordingSpan(
                    SpanContext(
                        trace_id, 0x99, is_remote=True, trace_flags=TraceFlags(parent_flags)
                    )
                )
            )
        )
        return sampler.should_sample(parent, trace_id, "GET /x", SpanKind.SERVER).decision

    assert decision(inside) == SAMPLED
    assert decision(outside) == DROP
    assert decision(outside, parent_flags=TraceFlags.SAMPLED) == SAMPLED
    assert decision(inside, parent_flags=TraceFlags.DEFAULT) == DROP
    # A ratio sampler named without its argument takes the same default, not the SDK's 1.0.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    ratio = tracing._configured_sampler()
    assert isinstance(ratio, sampling.TraceIdRatioBased)
    assert ratio.rate == tracing.DEFAULT_RATIO


async def test_only_a_request_with_a_sampled_traceparent_is_traced_at_ratio_0(
    sampled_on_demand: InMemorySpanExporter,
) -> None:
    """The on-demand rule end to end in one service: a request without a trace context or with
    an unsampled one records nothing (it still gets a trace id for its logs and X-Trace-Id); one
    with a sampled `traceparent` is recorded under the header's trace id and parent, and the
    context it hands an outbox row carries the sampled flag on to the consumer, which records
    its step in the same trace."""
    staged: list[dict[str, str] | None] = []
    api = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})  # as create_app

    @api.get("/things")
    async def things() -> dict[str, str]:
        staged.append(tracing.carrier())  # what an outbox row would keep
        return {}

    app = RequestContextMiddleware(api)
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shop"
    ) as http:
        plain = await http.get("/things")
        unsampled = await http.get(
            "/things", headers={"traceparent": f"00-{secrets.token_hex(16)}-{parent_id}-00"}
        )
        assert sampled_on_demand.get_finished_spans() == ()
        asked = await http.get("/things", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})

    assert [plain.status_code, unsampled.status_code, asked.status_code] == [200, 200, 200]
    assert len(plain.headers["X-Trace-Id"]) == 32  # unsampled, yet named for the logs
    assert asked.headers["X-Trace-Id"] == trace_id
    [request] = sampled_on_demand.get_finished_spans()
    assert request.kind == SpanKind.SERVER
    assert request.name == "GET /things"
    assert format(request.context.trace_id, "032x") == trace_id
    assert request.parent is not None
    assert format(request.parent.span_id, "016x") == parent_id
    # What the unsampled requests staged carries their decision on; the sampled one's, its own.
    first, second, carried = staged
    assert first is not None
    assert not _sampled_flag(first["traceparent"])  # a new id's flags may carry "random" (02)
    assert second is not None
    assert not _sampled_flag(second["traceparent"])
    assert carried is not None
    assert carried["traceparent"] == f"00-{trace_id}-{format(request.context.span_id, '016x')}-01"
    # The consumer of that event records its step as the request's child, at ratio 0 too.
    with tracing.consumer_span("ThingHappened process", tracing.kafka_headers(carried), "t"):
        pass
    with tracing.consumer_span("ThingHappened process", tracing.kafka_headers(first), "t"):
        pass
    processed = [s for s in sampled_on_demand.get_finished_spans() if s.kind == SpanKind.CONSUMER]
    assert len(processed) == 1
    assert processed[0].context.trace_id == request.context.trace_id
    assert processed[0].parent is not None
    assert processed[0].parent.span_id == request.context.span_id


async def test_new_requests_are_sampled_at_the_ratio_and_the_rest_carry_an_unsampled_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """server_span decides a new trace's sampling itself (no SDK span for the unsampled): at
    ratio 0.1 about a tenth of the requests are recorded, each under its own trace id; every
    other one still answers an X-Trace-Id and hands its outbox rows that trace, unsampled."""
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing("kit-test", exporter=exporter)
    staged: list[dict[str, str] | None] = []
    api = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})

    @api.get("/things")
    async def things() -> dict[str, str]:
        staged.append(tracing.carrier())
        return {}

    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=RequestContextMiddleware(api)),
            base_url="http://shop",
        ) as http:
            answers = [await http.get("/things") for _ in range(2_000)]
    finally:
        tracing.shutdown_tracing()

    recorded = exporter.get_finished_spans()
    assert 120 < len(recorded) < 290  # 200 expected; binomial sd ≈ 13
    assert all(s.kind == SpanKind.SERVER and s.name == "GET /things" for s in recorded)
    assert len({s.context.trace_id for s in recorded}) == len(recorded)
    trace_ids = {answer.headers["X-Trace-Id"] for answer in answers}
    assert len(trace_ids) == len(answers)
    assert {format(s.context.trace_id, "032x") for s in recorded} <= trace_ids
    carried = [c["traceparent"] for c in staged if c is not None]
    assert len(carried) == len(answers)  # every request, sampled or not, names its trace
    assert sum(_sampled_flag(tp) for tp in carried) == len(recorded)
    assert {tp.split("-")[1] for tp in carried} == trace_ids


def _sampled_flag(traceparent: str) -> bool:
    return bool(int(traceparent.rsplit("-", 1)[1], 16) & TraceFlags.SAMPLED)


async def test_a_dead_lettered_and_replayed_event_keeps_its_trace(
    settings: ServiceSettings,
    sessions: async_sessionmaker[AsyncSession],
    spans: InMemorySpanExporter,
    consumer: StartConsumer,
) -> None:
    broken = True
    handled = asyncio.Event()

    async def step(uow: UnitOfWork, payment: PaymentCompleted, _: Envelope) -> None:
        if broken:
            raise ValueError("handler bug #7")
        uow.after_commit(handled.set)

    with tracing.tracer.start_as_current_span("POST /orders") as request:
        async with UnitOfWork(sessions, "kit") as uow:
            uow.emit(PaymentCompleted(order_id=uuid.uuid4(), user_id=1, amount=1, balance_after=0))
            await uow.commit()
    root = request.get_span_context()
    async with consumer(
        {PaymentCompleted: step},
        group_id="kit-trace-dlq",
        topics=[topics.PAYMENT_EVENTS],
    ) as producer:
        assert await OutboxRelay(settings, sessions, producer).publish_batch() == 1
        [letter] = await eventually(lambda: read_all(settings), timeout_s=30)
        traceparent = letter.header("traceparent")
        assert traceparent.split("-")[1:3] == [
            format(root.trace_id, "032x"),
            format(root.span_id, "016x"),
        ]
        broken = False
        assert await replay(settings, [letter]) == 1
        await asyncio.wait_for(handled.wait(), 30)

    processed = [s for s in spans.get_finished_spans() if s.name == "PaymentCompleted process"]
    assert processed  # the failed attempt(s) and the replay, each in the request's trace
    for span in processed:
        assert span.context.trace_id == root.trace_id
        assert span.parent is not None
        assert span.parent.span_id == root.span_id
    assert any(span.status.is_ok for span in processed)


def test_an_unsampled_trace_is_carried_on_without_spans(spans: InMemorySpanExporter) -> None:
    """A message of a trace the edge did not sample costs no span, but the events its handler
    emits carry the same trace, still unsampled, so no later step starts one of its own."""
    trace_id, parent_id = "ab" * 16, "cd" * 8
    headers = [("traceparent", f"00-{trace_id}-{parent_id}-00".encode())]
    with tracing.consumer_span("X process", headers, "topic"):
        assert tracing.carrier() == {"traceparent": f"00-{trace_id}-{parent_id}-00"}
        assert tracing.current_trace_id() == trace_id
    sampled = [("traceparent", f"00-{trace_id}-{parent_id}-01".encode())]
    with tracing.consumer_span("Y process", sampled, "topic"):
        carried = tracing.carrier()
        assert carried is not None
        assert carried["traceparent"].endswith("-01")
    assert [s.name for s in spans.get_finished_spans()] == ["Y process"]
