"""Done-means of the relay: every paid order delivered exactly once. An outage of the platform
(no answer, 5xx, 408, 429, a refused signature) pauses the relay for as long as it lasts and loses
nothing; only an order the platform refuses itself is parked in the dead-letter topic, and the
orders after it still get through."""

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
    PeerRequest,
    asyncpg_dsn,
    collect,
    eventually,
    free_port,
    publish,
    publish_envelope,
    topic_reader,
)
from shopkit.testing.plugin import ServePeer

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


async def test_a_platform_down_for_a_while_pauses_the_relay_and_loses_nothing(
    relay_url: str, settings: RelaySettings, standin: httpx.AsyncClient, paid_order: PaidOrder
) -> None:
    dead_before = metric("dataplatform_dead_lettered_total")
    await standin.post("/control/fail-next", json={"count": 1_000_000, "status": 503})
    waiting = [
        await publish(settings.topic(topics.ORDER_EVENTS), paid_order((4, 1))) for _ in range(3)
    ]
    # Many more failed attempts than max_attempts: the relay probes, never gives up.
    await eventually(lambda: _requests_at_least(standin, 3 * settings.max_attempts))
    assert metric("dataplatform_circuit_open") == 1
    await eventually(lambda: _metric_at_least("dataplatform_backlog", 1))
    assert metric("dataplatform_dead_lettered_total") == dead_before

    await standin.post("/control/fail-next", json={"count": 0, "status": 503})  # back
    await eventually(lambda: _has_all(standin, waiting))
    assert await delivered_keys(standin) == {str(e.event_id) for e in waiting}
    assert (await stats(standin))["duplicates"] == 0
    assert metric("dataplatform_circuit_open") == 0
    assert metric("dataplatform_dead_lettered_total") == dead_before
    outcomes = await _outcomes(settings, waiting)
    assert {status for status, _ in outcomes.values()} == {"DELIVERED"}


async def test_an_order_the_platform_refuses_is_parked_and_later_orders_get_through(
    relay_url: str, settings: RelaySettings, standin: httpx.AsyncClient, paid_order: PaidOrder
) -> None:
    dead_before = metric("dataplatform_dead_lettered_total")
    await standin.post("/control/fail-next", json={"count": settings.max_attempts, "status": 422})
    refused = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((4, 1)))
    headers = await dead_letter_of(settings, refused)
    assert headers["dlq.attempts"] == str(settings.max_attempts)
    assert headers["dlq.error"].startswith("HTTP 422")
    assert headers["dlq.topic"] == settings.topic(topics.ORDER_EVENTS)
    assert (await stats(standin))["requests"] == settings.max_attempts
    assert metric("dataplatform_dead_lettered_total") - dead_before == 1

    later = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((5, 1)))
    await eventually(lambda: delivered_keys(standin))
    assert await delivered_keys(standin) == {str(later.event_id)}
    assert await _outcomes(settings, [refused, later]) == {
        refused.event_id: ("DEAD_LETTERED", settings.max_attempts),
        later.event_id: ("DELIVERED", 1),
    }


async def test_too_many_requests_and_request_timeouts_are_waited_out(
    relay_url: str, settings: RelaySettings, standin: httpx.AsyncClient, paid_order: PaidOrder
) -> None:
    for status in (429, 408):
        await standin.post("/control/reset")
        await standin.post(
            "/control/fail-next", json={"count": settings.max_attempts + 2, "status": status}
        )
        envelope = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((3, 1)))
        await eventually(lambda: delivered_keys(standin))
        assert await delivered_keys(standin) == {str(envelope.event_id)}, status
        assert (await stats(standin))["requests"] == settings.max_attempts + 3


async def _outcomes(
    settings: RelaySettings, envelopes: list[Envelope]
) -> dict[uuid.UUID, tuple[str, int]]:
    db = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await db.fetch(
            "SELECT event_id, status, attempts FROM relay_deliveries"
            " WHERE event_id = ANY($1::uuid[])",
            [e.event_id for e in envelopes],
        )
    finally:
        await db.close()
    return {r["event_id"]: (r["status"], r["attempts"]) for r in rows}


async def _metric_at_least(name: str, value: float) -> bool:
    return metric(name) >= value


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


async def test_a_refused_signature_pauses_the_relay_until_the_secret_is_fixed(
    make_settings: Callable[..., RelaySettings],
    start_relay: StartRelay,
    standin: httpx.AsyncClient,
    paid_order: PaidOrder,
) -> None:
    """A secret rotated on one side only: the platform answers 401 to every order. That is not
    the orders' fault: they wait (none dead-lettered) until the relay runs with the new secret."""
    wrong = make_settings(data_platform_secret="not-the-platform-secret-but-32-bytes-long")
    envelope = await publish(wrong.topic(topics.ORDER_EVENTS), paid_order((2, 1)))
    async with (
        topic_reader(wrong.topic(topics.DEAD_LETTER)) as dead_letters,
        start_relay(wrong),
    ):
        await eventually(lambda: _rejected_at_least(standin, wrong.max_attempts + 2))
        parked = await dead_letters.getmany(timeout_ms=300)
    assert not any(parked.values())
    assert await received(standin) == []

    fixed = wrong.model_copy(update={"data_platform_secret": make_settings().data_platform_secret})
    async with start_relay(fixed):
        await eventually(lambda: delivered_keys(standin))
    assert await delivered_keys(standin) == {str(envelope.event_id)}


async def test_refused_connections_are_retried_until_the_platform_is_reachable(
    make_settings: Callable[..., RelaySettings],
    start_relay: StartRelay,
    standin: httpx.AsyncClient,
    paid_order: PaidOrder,
) -> None:
    nowhere = make_settings(data_platform_url=f"http://127.0.0.1:{free_port()}")
    retried_before = metric("dataplatform_retries_total")
    envelope = await publish(nowhere.topic(topics.ORDER_EVENTS), paid_order((2, 1)))
    async with (
        topic_reader(nowhere.topic(topics.DEAD_LETTER)) as dead_letters,
        start_relay(nowhere),
    ):
        await eventually(
            lambda: _metric_at_least(
                "dataplatform_retries_total", retried_before + nowhere.max_attempts + 2
            )
        )
        parked = await dead_letters.getmany(timeout_ms=300)
    assert not any(parked.values())

    reachable = nowhere.model_copy(update={"data_platform_url": make_settings().data_platform_url})
    async with start_relay(reachable):
        await eventually(lambda: delivered_keys(standin))
    assert await delivered_keys(standin) == {str(envelope.event_id)}


async def _rejected_at_least(standin: httpx.AsyncClient, n: int) -> bool:
    return (await stats(standin))["rejected_signatures"] >= n


async def test_answers_slower_than_the_timeout_are_retried_and_delivered_once(
    make_settings: Callable[..., RelaySettings],
    start_relay: StartRelay,
    standin: httpx.AsyncClient,
    paid_order: PaidOrder,
) -> None:
    settings = make_settings(request_timeout_s=0.2, backoff_max_s=0.2)
    await standin.post("/control/slow", json={"seconds": 1})
    async with start_relay(settings):
        envelope = await publish(settings.topic(topics.ORDER_EVENTS), paid_order((2, 1)))
        await eventually(lambda: _requests_at_least(standin, 3))
        await standin.post("/control/slow", json={"seconds": 0})
        await eventually(lambda: delivered_keys(standin))
    assert await delivered_keys(standin) == {str(envelope.event_id)}


async def test_a_platform_stuck_on_one_order_does_not_hold_back_other_partitions(
    make_settings: Callable[..., RelaySettings],
    start_relay: StartRelay,
    paid_order: PaidOrder,
    http_peer: ServePeer,
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

    async def platform(request: PeerRequest) -> tuple[int, bytes]:
        order_id = orjson.loads(request.body)["order_id"]
        if order_id == str(stuck.order_id):
            await release.wait()
        posted.append(order_id)
        return 201, b"{}"

    async with (
        http_peer(platform) as peer,
        start_relay(settings.model_copy(update={"data_platform_url": peer.url})),
    ):
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
