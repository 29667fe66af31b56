"""One trace across Kafka: the span of the transaction that stages an event is continued by the
consumer that handles it, through the outbox row and the Kafka headers (W3C traceparent); the
events that step emits carry the trace on. Off (the default), nothing is added anywhere."""

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, PaymentCompleted, PaymentFailed, topics
from shopkit import tracing
from shopkit.db import OutboxRow
from shopkit.outbox import OutboxRelay
from shopkit.settings import ServiceSettings
from shopkit.testing import collect, running_consumer, topic_reader
from shopkit.uow import UnitOfWork


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
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
) -> None:
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
        running_consumer(
            settings,
            sessions,
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
