"""The dead-letter topic for operators: `python -m shopkit.ops.deadletters` (`make deadletters`).

    list   [--consumer C] [--topic T] [--error TEXT] [--order ID]   one line per dead letter
    show   ID                                                        its headers and message
    replay ID [ID ...] | --all [the list filters]  [--again]         back to its original topic

An ID is `<partition>:<offset>` in the dead-letter topic, as `list` prints it. A replay sends the
message as it first came (key, value, its own headers) to the topic it was dead-lettered from,
with `dlq.replayed-from` (the letter) and `dlq.replayed-for` (the consumer that gave up on it:
the topic's other consumers skip it, shopkit.messaging.reading.wanted) headers, and then records that it did: a marker record on the
dead-letter topic itself (`dlq.replay-of: ID`, no value), so it is remembered as long as the
letter is, by every operator and every later run. A letter replayed before is skipped (and
said so) unless `--again` is given: `replay --all` run twice sends each letter once. (Killed
between the replay and its marker, the next run sends it again; and if a letter did come back
twice, every consumer is idempotent by event id for longer than the letter can live:
shopkit.messaging.claims.) A replayed event that fails again is dead-lettered again: a new
letter, with an ID of its own, that the next `replay --all` picks up. Connection settings are
the services' own (KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC_PREFIX).
"""

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shop_contracts import topics
from shopkit.messaging.deadletter import PREFIX, REPLAYED_FOR, REPLAYED_FROM, original_headers
from shopkit.messaging.kafka import make_producer
from shopkit.settings import ServiceSettings

REPLAY_OF = f"{PREFIX}replay-of"
"""The header of a marker record: the ID of the letter it says was replayed."""


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    replayed: bool = False
    """A marker says it was replayed before."""

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    def header(self, name: str) -> str:
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), "")

    @property
    def consumer(self) -> str:
        return self.header(f"{PREFIX}consumer")

    @property
    def topic(self) -> str:
        """Where it came from (and goes back to on replay)."""
        return self.header(f"{PREFIX}topic")

    @property
    def error(self) -> str:
        return self.header(f"{PREFIX}error")

    @property
    def envelope(self) -> dict[str, Any]:
        """The event's envelope fields, as far as the message can be read."""
        try:
            parsed = orjson.loads(self.value)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    def matches(self, args: argparse.Namespace) -> bool:
        return (
            (not args.consumer or self.consumer == args.consumer)
            and (not args.topic or self.topic in {args.topic, args.topic_physical})
            and (not args.error or args.error.lower() in self.error.lower())
            and (not args.order or str(self.envelope.get("order_id", "")) == args.order)
        )


async def read_all(settings: ServiceSettings) -> list[DeadLetter]:
    """Every record on the dead-letter topic, oldest first per partition."""
    topic = settings.topic(topics.DEAD_LETTER)
    partitions = await _partitions_of(settings, topic)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1_000)
            for records in batches.values():
                letters += [
                    DeadLetter(
                        r.partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value,
                        tuple((k, bytes(v)) for k, v in r.headers),
                    )
                    for r in records
                    if r.offset < ends[TopicPartition(topic, r.partition)]
                ]
        replayed = {m.header(REPLAY_OF) for m in letters if m.header(REPLAY_OF)}
        return sorted(
            (replace(d, replayed=d.id in replayed) for d in letters if not d.header(REPLAY_OF)),
            key=lambda d: (d.timestamp_ms, d.partition, d.offset),
        )
    finally:
        await consumer.stop()


async def _partitions_of(settings: ServiceSettings, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described.get("error_code"):
        return []  # no such topic: nothing was ever dead-lettered
    return sorted(p["partition"] for p in described["partitions"])


async def replay(settings: ServiceSettings, letters: Sequence[DeadLetter]) -> int:
    """Sends each letter back to its original topic, then marks it replayed (a marker on the
    dead-letter topic); the number sent."""
    producer = make_producer(settings)
    await producer.start()
    try:
        for letter in letters:
            if not letter.topic:
                raise ValueError(f"dead letter {letter.id} has no {PREFIX}topic header")
            await producer.send_and_wait(
                letter.topic,
                value=letter.value,
                key=letter.key,
                headers=[
                    *original_headers(letter.headers),
                    (REPLAYED_FROM, letter.id.encode()),
                    (REPLAYED_FOR, letter.consumer.encode()),
                ],
            )
            await producer.send_and_wait(
                settings.topic(topics.DEAD_LETTER),
                value=b"",
                key=letter.key,
                headers=[
                    (REPLAY_OF, letter.id.encode()),
                    (f"{PREFIX}replayed-at", datetime.now(UTC).isoformat().encode()),
                ],
            )
    finally:
        await producer.stop()
    return len(letters)


def _line(letter: DeadLetter) -> str:
    when = datetime.fromtimestamp(letter.timestamp_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    envelope = letter.envelope
    error = " ".join(letter.error.split())[:100]
    return (
        f"{letter.id:<10} {when}  {letter.consumer:<28} {letter.topic:<24} "
        f"{envelope.get('event_type', '?'):<18} {envelope.get('order_id', '?')!s:<36} "
        f"{letter.header(f'{PREFIX}attempts') or '-':>3}  "
        f"{'replayed' if letter.replayed else '-':<8}  {error}"
    )


def _show(letter: DeadLetter) -> str:
    try:
        message: Any = orjson.loads(letter.value)
    except orjson.JSONDecodeError:
        message = letter.value.decode(errors="replace")
    return json.dumps(
        {
            "id": letter.id,
            "key": letter.key.decode(errors="replace") if letter.key is not None else None,
            "headers": {k: v.decode(errors="replace") for k, v in letter.headers},
            "replayed": letter.replayed,
            "message": message,
        },
        indent=2,
        ensure_ascii=False,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shopkit.ops.deadletters", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--consumer", help="only this consumer's (dlq.consumer)")
    filters.add_argument("--topic", help="only from this topic (logical or physical name)")
    filters.add_argument("--error", help="only errors containing this text")
    filters.add_argument("--order", help="only this order id's")
    commands.add_parser("list", parents=[filters], help="one line per dead letter")
    show = commands.add_parser("show", help="one dead letter, whole")
    show.add_argument("id")
    again = commands.add_parser("replay", parents=[filters], help="send back to the original topic")
    again.add_argument("ids", nargs="*", metavar="ID")
    again.add_argument("--all", action="store_true", help="every dead letter the filters select")
    again.add_argument(
        "--again", action="store_true", help="also the letters replayed before (skipped otherwise)"
    )
    return parser


async def run(argv: Sequence[str], settings: ServiceSettings, out: TextIO = sys.stdout) -> int:
    args = _parser().parse_args(argv)
    args.topic_physical = settings.topic(args.topic) if getattr(args, "topic", None) else None
    letters = await read_all(settings)
    if args.command == "list":
        chosen = [d for d in letters if d.matches(args)]
        for letter in chosen:
            out.write(_line(letter) + "\n")
        out.write(f"{len(chosen)} dead letter(s)\n")
        return 0
    by_id = {d.id: d for d in letters}
    if args.command == "show":
        if args.id not in by_id:
            sys.stderr.write(f"no dead letter {args.id}\n")
            return 1
        out.write(_show(by_id[args.id]) + "\n")
        return 0
    if args.all == bool(args.ids):
        sys.stderr.write("replay: give IDs or --all (with optional filters), not both\n")
        return 2
    missing = [i for i in args.ids if i not in by_id]
    if missing:
        sys.stderr.write(f"no dead letter {', '.join(missing)}\n")
        return 1
    chosen = [d for d in letters if d.matches(args)] if args.all else [by_id[i] for i in args.ids]
    skipped = [d for d in chosen if d.replayed and not args.again]
    sent = await replay(settings, [d for d in chosen if not d.replayed or args.again])
    out.write(f"replayed {sent} dead letter(s)\n")
    if skipped:
        out.write(
            f"skipped {len(skipped)} replayed before: {' '.join(d.id for d in skipped)}"
            " (--again to replay them too)\n"
        )
    return 0


def main() -> None:
    settings = ServiceSettings(service_name="deadletters")
    sys.exit(asyncio.run(run(sys.argv[1:], settings)))


if __name__ == "__main__":
    main()
