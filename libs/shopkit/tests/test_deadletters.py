"""The dead-letter tooling against real Kafka and PostgreSQL: an event a broken handler gave up
on is listed, shown and, once the handler is fixed, replayed to its topic and handled exactly
once, however often it is replayed."""

import asyncio
import io
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shop_contracts import Envelope, PaymentCompleted, topics
from shopkit.database.uow import UnitOfWork
from shopkit.messaging.kafka import EVENT_TYPE_HEADER
from shopkit.ops.deadletters import read_all, run
from shopkit.settings import ServiceSettings
from shopkit.testing import eventually
from shopkit.testing.plugin import StartConsumer

from .conftest import effect_count, record_effect


async def _cli(settings: ServiceSettings, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = await run(list(argv), settings, out)
    return code, out.getvalue()


async def test_a_dead_letter_is_listed_shown_and_replayed_once_the_handler_is_fixed(
    settings: ServiceSettings,
    sessions: async_sessionmaker[AsyncSession],
    consumer: StartConsumer,
) -> None:
    broken = True

    async def handler(uow: UnitOfWork, payment: PaymentCompleted, envelope: Envelope) -> None:
        if broken:
            raise ValueError("handler bug #42")
        await record_effect(uow, payment, envelope)

    async with consumer(
        {PaymentCompleted: handler},
        group_id="kit-dlq",
        topics=[topics.PAYMENT_EVENTS],
    ) as producer:
        order_id = uuid.uuid4()
        envelope = Envelope.wrap(
            PaymentCompleted(order_id=order_id, user_id=7, amount=900, balance_after=100),
            producer="test",
        )
        await producer.send_and_wait(
            settings.topic(topics.PAYMENT_EVENTS),
            value=envelope.model_dump_json().encode(),
            key=envelope.key,
            headers=[(EVENT_TYPE_HEADER, b"PaymentCompleted")],
        )
        [letter] = await eventually(lambda: read_all(settings), timeout_s=30)
        assert letter.consumer == "kit-dlq"
        assert letter.topic == settings.topic(topics.PAYMENT_EVENTS)
        assert "handler bug #42" in letter.error
        # The message's own headers are kept for the replay.
        assert (EVENT_TYPE_HEADER, b"PaymentCompleted") in letter.headers

        code, listed = await _cli(settings, "list", "--consumer", "kit-dlq")
        assert code == 0
        assert letter.id in listed
        assert str(order_id) in listed
        assert "PaymentCompleted" in listed
        assert "1 dead letter(s)" in listed
        assert (await _cli(settings, "list", "--consumer", "someone-else"))[1].endswith(
            "0 dead letter(s)\n"
        )
        code, shown = await _cli(settings, "show", letter.id)
        assert code == 0
        assert str(envelope.event_id) in shown
        assert "handler bug #42" in shown

        broken = False  # the fix is deployed
        code, replayed = await _cli(settings, "replay", letter.id)
        assert (code, replayed.strip()) == (0, "replayed 1 dead letter(s)")
        await eventually(lambda: effect_count(sessions, order_id), timeout_s=30)

        # Replaying it again (or everything) changes nothing: the consumer is idempotent.
        code, _ = await _cli(settings, "replay", "--all", "--order", str(order_id))
        assert code == 0
        await asyncio.sleep(1.5)
        assert await effect_count(sessions, order_id) == 1
        assert len(await read_all(settings)) == 1  # the replays were handled, none came back

        assert (await _cli(settings, "show", "99:99"))[0] == 1
        assert (await _cli(settings, "replay", letter.id, "--all"))[0] == 2
