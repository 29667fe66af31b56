"""The ranking's stream processor: `python -m ranking.workers` (a Faust worker; run N of them,
Kafka spreads the partitions). It migrates the DB and creates the topics first, the tables'
changelog topics included."""

import asyncio
import logging

import faust
from mode.utils.logging import level_number

from ranking.config import Settings
from ranking.main import MIGRATIONS
from ranking.stream.app import SalesStream
from shop_contracts import topics
from shopkit.database.migrations import upgrade
from shopkit.messaging.kafka import ensure_topics
from shopkit.ops.logging import configure_logging
from shopkit.ops.tracing import configure_tracing


async def prepare(settings: Settings, stream: SalesStream) -> None:
    if settings.run_migrations:
        await upgrade(MIGRATIONS, settings.database_url)
    await ensure_topics(
        settings, [topics.ORDER_EVENTS, topics.DEAD_LETTER], exact=stream.changelog_topics()
    )


def main() -> None:
    settings = Settings(service_name="ranking-stream")
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    configure_tracing(settings.service_name)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stream = SalesStream(settings)
    loop.run_until_complete(prepare(settings, stream))
    worker = faust.Worker(
        stream.app, loglevel=settings.log_level.lower(), loop=loop, redirect_stdouts=False
    )
    # No terminal spinner: with one, Faust sets the root logger to DEBUG, and every send and
    # changelog write built a DEBUG record never printed (8 % of the worker's CPU under load).
    worker.spinner = None
    # The Kafka client logs every send at DEBUG; building those records (never printed) cost a
    # tenth of the worker's CPU under load.
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, level_number(settings.log_level)))
    worker.execute_from_commandline()


main()
