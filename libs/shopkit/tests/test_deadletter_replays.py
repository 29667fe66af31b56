"""`replay` sends a dead letter back once, however often it is run: what was replayed is
recorded on the dead-letter topic itself (a marker), so a later run, by anyone, skips it."""

import io
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shop_contracts import Envelope, PaymentCompleted, topics
from shopkit.messaging.deadletter import dead_letter
from shopkit.messaging.kafka import ensure_topics, make_producer
from shopkit.ops.deadletters import read_all, run
from shopkit.settings import ServiceSettings
from shopkit.testing import collect, publish_envelope, topic_reader


async def _cli(settings: ServiceSettings, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await run(list(argv), settings, out)
    return code, out.getvalue()


async def _published(settings: ServiceSettings, *envelopes: Envelope) -> list[Any]:
    """Publishes the events; their records as a consumer reads them."""
    topic = settings.topic(topics.PAYMENT_EVENTS)
    await publish_envelope(topic, *envelopes)
    keys = {e.key for e in envelopes}
    async with topic_reader(topic) as reader:
        return await collect(reader, lambda seen: keys <= {r.key for r in seen})


async def _dead_letter(settings: ServiceSettings, records: list[Any]) -> None:
    """Dead-letters the records as a consumer would."""
    producer = make_producer(settings)
    await producer.start()
    try:
        for record in records:
            await dead_letter(producer, settings, record, consumer="kit-test", error="bug #7")
    finally:
        await producer.stop()


async def _replays_on(settings: ServiceSettings, topic: str) -> dict[str, int]:
    """Letter ID -> how many times it was replayed to `topic` (everything on it, read to the end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        counts: dict[str, int] = {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1_000)).values():
                for record in records:
                    replayed_from = dict(record.headers).get("dlq.replayed-from")
                    if replayed_from is not None:
                        counts[replayed_from.decode()] = counts.get(replayed_from.decode(), 0) + 1
        return counts
    finally:
        await consumer.stop()


def _payment() -> Envelope:
    return Envelope.wrap(
        PaymentCompleted(order_id=uuid.uuid4(), user_id=1, amount=100, balance_after=0),
        producer="test",
    )


async def test_replay_all_run_twice_sends_each_letter_once(settings: ServiceSettings) -> None:
    await ensure_topics(settings, [topics.PAYMENT_EVENTS, topics.DEAD_LETTER])
    await _dead_letter(settings, await _published(settings, _payment(), _payment()))
    letters = await read_all(settings)
    assert len(letters) == 2
    assert not any(letter.replayed for letter in letters)
    source = settings.topic(topics.PAYMENT_EVENTS)

    code, said = await _cli(settings, "replay", "--all")
    assert (code, said) == (0, "replayed 2 dead letter(s)\n")
    # A second run (a new process would read the same: the markers are on the topic).
    code, said = await _cli(settings, "replay", "--all")
    assert code == 0
    assert said.startswith("replayed 0 dead letter(s)\nskipped 2 replayed before")
    assert await _replays_on(settings, source) == {letter.id: 1 for letter in letters}

    # The markers are not letters; the letters say they were replayed.
    after = await read_all(settings)
    assert [(a.id, a.replayed) for a in after] == [(letter.id, True) for letter in letters]
    code, listed = await _cli(settings, "list")
    assert listed.count("replayed") == 2
    assert listed.endswith("2 dead letter(s)\n")

    # Naming one again is skipped too, unless the operator insists.
    first = letters[0].id
    assert (await _cli(settings, "replay", first))[1].startswith("replayed 0 dead letter(s)")
    assert (await _cli(settings, "replay", first, "--again"))[1] == "replayed 1 dead letter(s)\n"
    assert await _replays_on(settings, source) == {first: 2, letters[1].id: 1}


async def test_a_letter_dead_lettered_again_after_its_replay_is_replayed_by_the_next_run(
    settings: ServiceSettings,
) -> None:
    await ensure_topics(settings, [topics.PAYMENT_EVENTS, topics.DEAD_LETTER])
    await _dead_letter(settings, await _published(settings, _payment()))
    [letter] = await read_all(settings)
    assert (await _cli(settings, "replay", "--all"))[1] == "replayed 1 dead letter(s)\n"
    async with topic_reader(settings.topic(topics.PAYMENT_EVENTS)) as reader:
        records = await collect(reader, lambda seen: len(seen) == 2)
    [replayed] = [r for r in records if dict(r.headers).get("dlq.replayed-from")]
    # for the consumer that gave up on it: the topic's other consumers skip it unread
    assert dict(replayed.headers)["dlq.replayed-for"] == b"kit-test"
    await _dead_letter(settings, [replayed])  # the handler still fails: a new letter

    code, said = await _cli(settings, "replay", "--all")
    assert code == 0
    assert (
        said
        == f"replayed 1 dead letter(s)\nskipped 1 replayed before: {letter.id} (--again to replay them too)\n"
    )
    assert [d.replayed for d in await read_all(settings)] == [True, True]
