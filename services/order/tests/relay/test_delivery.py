"""Done-means of the relay: retried until delivered once, dead-lettered when the platform
stays down (and the orders after it still get through), never delivered twice."""

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import asyncpg
import httpx
import orjson
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import REGISTRY

from order.relay.config import RelaySettings
from shop_contracts import Envelope, OrderFailed, OrderPaid, topics
from shop_contracts.events import FailureReason
from shopkit.testing import (
    asyncpg_dsn,
    collect,
    eventually,
    free_port,
    publish,
    publish_envelope,
    topic_reader,
)

StartRelay = Callable[..., AbstractAsyncContextManager[str]]
PaidOrder = Callable[..., OrderPaid]


def metric(name: str) -> float:
    """A relay counter of this process (every relay started by the tests runs in it)."""
    return REGISTRY.get_sample_value(name) or 0.0


async def received(standin: httpx.AsyncClient) -> list[dict[str, object]]:
    items: list[dict[str, object]] = (await standin.get("/orders")).json()["items"]
    return items


async def stats(standin: httpx.AsyncClient) -> dict[str, int]:
    result: dict[str, int] = (await standin.get("/control/stats")).json()
    return result


async def delivered_keys(standin: httpx.AsyncClient) -> set[str]:
    return {str(item["idempotency_key"]) for item in await received(standin)}


async def dead_letter_of(settings: RelaySettings, envelope: Envelope) -> dict[str, str]:
    """The headers of the event's dead-letter record (waits for it)."""
    async with topic_reader(settings.topic(topics.DEAD_LETTER)) as reader:
        records = await collect(reader, lambda seen: any(r.key == envelope.key for r in seen))
    record = next(r for r in records if r.key == envelope.key)
    assert Envelope.model_validate(orjson.loads(record.value)) == envelope
    return {k: v.decode() for k, v in record.headers}


async def test_the_relay_serves_its_metrics_and_health(relay_url: str) -> None:
    async with httpx.AsyncClient(base_url=relay_url) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        text = (await client.get("/metrics")).text
    for name in (
        "dataplatform_delivered_total",
        "dataplatform_retries_total",
        "dataplatform_dead_lettered_total",
        "dataplatform_delivery_seconds_bucket",
    ):
        assert name in text


async def test_a_paid_order_is_posted_signed_with_the_event_id_as_idempotency_key(
    relay_url: str, settings: RelaySettings, standin: httpx.AsyncClient, paid_order: PaidOrder
) -> None:
    envelope = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((7, 2), (9, 1)))
    await eventually(lambda: delivered_keys(standin))
    [item] = await received(standin)
    assert item["idempotency_key"] == str(envelope.event_id)
    assert item["order"] == envelope.payload
    assert (await stats(standin))["rejected_signatures"] == 0


async def test_other_events_on_the_topic_are_not_forwarded(
    relay_url: str, settings: RelaySettings, standin: httpx.AsyncClient, paid_order: PaidOrder
) -> None:
    order_events = settings.topic(topics.ORDER_EVENTS)
    failed = OrderFailed(order_id=uuid.uuid4(), user_id=1, reason=FailureReason.OUT_OF_STOCK)
    await publish(order_events, failed)
    paid = await publish(
        order_events, paid_order((1, 1)).model_copy(update={"order_id": failed.order_id})
    )
    await eventually(lambda: delivered_keys(standin))
    assert await delivered_keys(standin) == {str(paid.event_id)}
    assert (await stats(standin))["requests"] == 1


async def test_a_platform_failing_the_first_3_attempts_gets_the_order_exactly_once(
    relay_url: str, settings: RelaySettings, standin: httpx.AsyncClient, paid_order: PaidOrder
) -> None:
    retried_before = metric("dataplatform_retries_total")
    await standin.post("/control/fail-next", json={"count": 3, "status": 503})
    envelope = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((3, 1)))
    await eventually(lambda: delivered_keys(standin))
    assert await delivered_keys(standin) == {str(envelope.event_id)}
    s = await stats(standin)
    assert (s["requests"], s["injected_failures"], s["accepted"], s["duplicates"]) == (4, 3, 1, 0)
    assert metric("dataplatform_retries_total") - retried_before == 3


async def test_a_platform_down_for_good_dead_letters_the_order_and_later_orders_get_through(
    relay_url: str, settings: RelaySettings, standin: httpx.AsyncClient, paid_order: PaidOrder
) -> None:
    dead_before = metric("dataplatform_dead_lettered_total")
    await standin.post("/control/fail-next", json={"count": 1_000_000, "status": 503})
    lost = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((4, 1)))
    headers = await dead_letter_of(settings, lost)
    assert headers["dlq.attempts"] == str(settings.max_attempts)
    assert headers["dlq.error"].startswith("HTTP 503")
    assert headers["dlq.topic"] == settings.topic(topics.ORDER_EVENTS)
    assert (await stats(standin))["requests"] == settings.max_attempts
    assert metric("dataplatform_dead_lettered_total") - dead_before == 1

    await standin.post("/control/reset")  # the platform is back
    later = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((5, 1)))
    await eventually(lambda: delivered_keys(standin))
    assert await delivered_keys(standin) == {str(later.event_id)}
    db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await db.fetch(
            "SELECT event_id, status, attempts, last_error FROM relay_deliveries"
            " WHERE event_id = ANY($1::uuid[])",
            [lost.event_id, later.event_id],
        )
    finally:
        await db.close()
    outcome = {r["event_id"]: (r["status"], r["attempts"]) for r in rows}
    assert outcome == {
        lost.event_id: ("DEAD_LETTERED", settings.max_attempts),
        later.event_id: ("DELIVERED", 1),
    }


async def test_a_redelivered_event_is_not_posted_again(
    relay_url: str, settings: RelaySettings, standin: httpx.AsyncClient, paid_order: PaidOrder
) -> None:
    skipped_before = metric("dataplatform_duplicates_skipped_total")
    envelope = Envelope.wrap(paid_order((6, 2)), producer="order")
    topic = settings.topic(topics.ORDER_EVENTS)
    await publish_envelope(topic, envelope, envelope)  # the outbox published it twice
    await eventually(lambda: delivered_keys(standin))
    await publish_envelope(topic, envelope)  # and once more, later

    await eventually(lambda: _skipped_since(skipped_before, 2))
    s = await stats(standin)
    assert (s["requests"], s["accepted"], s["duplicates"]) == (1, 1, 0)


async def test_a_relay_rereading_delivered_events_after_a_crash_does_not_post_them_again(
    make_settings: Callable[..., RelaySettings],
    start_relay: StartRelay,
    standin: httpx.AsyncClient,
    paid_order: PaidOrder,
) -> None:
    settings = make_settings()
    orders = [
        await publish(settings.topic(topics.ORDER_EVENTS), paid_order((8, 1))) for _ in range(5)
    ]
    async with start_relay(settings):
        await eventually(lambda: _has_all(standin, orders))
    # Killed between the platform's 2xx and writing relay_deliveries: that one is posted
    # again, and the platform's dedupe on the Idempotency-Key keeps it one delivery.
    db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await db.execute("DELETE FROM relay_deliveries WHERE event_id = $1", orders[0].event_id)
    finally:
        await db.close()
    skipped_before = metric("dataplatform_duplicates_skipped_total")
    # A relay whose offsets were never committed reads every event again (a new group does).
    rereading = settings.model_copy(update={"consumer_group": "order.dataplatform-relay.replayed"})
    async with start_relay(rereading):
        await eventually(lambda: _skipped_since(skipped_before, len(orders) - 1))
        await eventually(lambda: _requests_at_least(standin, len(orders) + 1))
    s = await stats(standin)
    assert (s["requests"], s["accepted"], s["duplicates"]) == (6, 5, 1)
    replays = {i["idempotency_key"]: i["replays"] for i in await received(standin)}
    assert replays == {str(o.event_id): int(o is orders[0]) for o in orders}


async def test_a_wrong_secret_is_rejected_by_the_platform_and_dead_lettered(
    make_settings: Callable[..., RelaySettings],
    start_relay: StartRelay,
    standin: httpx.AsyncClient,
    paid_order: PaidOrder,
) -> None:
    settings = make_settings(data_platform_secret="not-the-platform-secret")
    async with start_relay(settings):
        envelope = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((2, 1)))
        headers = await dead_letter_of(settings, envelope)
    assert headers["dlq.error"].startswith("HTTP 401")
    assert (await stats(standin))["rejected_signatures"] == settings.max_attempts
    assert await received(standin) == []


async def test_refused_connections_are_retried_then_dead_lettered(
    make_settings: Callable[..., RelaySettings], start_relay: StartRelay, paid_order: PaidOrder
) -> None:
    settings = make_settings(data_platform_url=f"http://127.0.0.1:{free_port()}")
    async with start_relay(settings):
        envelope = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((2, 1)))
        headers = await dead_letter_of(settings, envelope)
    assert headers["dlq.error"].startswith("ConnectError")
    assert headers["dlq.attempts"] == str(settings.max_attempts)


async def test_answers_slower_than_the_timeout_are_retried_and_delivered_once(
    make_settings: Callable[..., RelaySettings],
    start_relay: StartRelay,
    standin: httpx.AsyncClient,
    paid_order: PaidOrder,
) -> None:
    settings = make_settings(request_timeout_s=0.2, max_attempts=100, backoff_max_s=0.2)
    await standin.post("/control/slow", json={"seconds": 1})
    async with start_relay(settings):
        envelope = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((2, 1)))
        await eventually(lambda: _requests_at_least(standin, 3))
        await standin.post("/control/slow", json={"seconds": 0})
        await eventually(lambda: delivered_keys(standin))
    assert await delivered_keys(standin) == {str(envelope.event_id)}


async def test_a_platform_stuck_on_one_order_does_not_hold_back_other_partitions(
    make_settings: Callable[..., RelaySettings], start_relay: StartRelay, paid_order: PaidOrder
) -> None:
    settings = make_settings()
    stuck = paid_order((1, 1))
    others = [paid_order((1, 1)) for _ in range(30)]
    others = [
        o
        for o in others
        if _partition(o.order_id, settings) != _partition(stuck.order_id, settings)
    ][:5]
    release = asyncio.Event()
    posted: list[str] = []

    async def platform(request: httpx.Request) -> httpx.Response:
        order_id = orjson.loads(request.content)["order_id"]
        if order_id == str(stuck.order_id):
            await release.wait()
        posted.append(order_id)
        return httpx.Response(201)

    async with start_relay(settings, transport=httpx.MockTransport(platform)):
        topic = settings.topic(topics.ORDER_EVENTS)
        await publish(topic, stuck)
        for order in others:
            await publish(topic, order)

        async def others_posted() -> bool:
            return len(posted) == len(others)

        await eventually(others_posted)
        assert str(stuck.order_id) not in posted
        release.set()
        await eventually(lambda: _contains(posted, str(stuck.order_id)))


def _partition(order_id: uuid.UUID, settings: RelaySettings) -> int:
    partitions = list(range(settings.kafka_topic_partitions))
    return int(DefaultPartitioner()(str(order_id).encode(), partitions, partitions))


async def _contains(items: list[str], item: str) -> bool:
    return item in items


async def _skipped_since(before: float, n: int) -> bool:
    return metric("dataplatform_duplicates_skipped_total") - before >= n


async def _requests_at_least(standin: httpx.AsyncClient, n: int) -> bool:
    return (await stats(standin))["requests"] >= n


async def _has_all(standin: httpx.AsyncClient, envelopes: list[Envelope]) -> bool:
    return {str(e.event_id) for e in envelopes} <= await delivered_keys(standin)
