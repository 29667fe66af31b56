"""Run the daily ranking job now: `python -m ranking.snapshot [--as-of 2026-03-10T00:01+09:00]`.

Prints the snapshot as JSON (what GET /rankings/top-products will serve)."""

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from functools import partial

from ranking.api.schemas import TopProductsResponse
from ranking.config import Settings
from ranking.main import MIGRATIONS
from ranking.service.snapshots import take_snapshot
from shopkit.database.engine import create_engine, session_factory
from shopkit.database.migrations import upgrade
from shopkit.database.uow import UnitOfWork


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError("--as-of needs a UTC offset, e.g. +09:00")
    return parsed


async def run(settings: Settings, as_of: datetime) -> TopProductsResponse:
    await upgrade(MIGRATIONS, settings.database_url)
    engine = create_engine(settings)
    try:
        units = partial(UnitOfWork, session_factory(engine), settings.service_name, engine)
        ranking = await take_snapshot(units, settings, as_of)
    finally:
        await engine.dispose()
    return TopProductsResponse.of(ranking, ranking.days.days)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ranking.snapshot", description=__doc__)
    parser.add_argument(
        "--as-of", type=_aware, default=None, help="compute as if run at this time (ISO-8601)"
    )
    args = parser.parse_args(argv)
    result = asyncio.run(run(Settings(), args.as_of or datetime.now(UTC)))
    sys.stdout.write(result.model_dump_json() + "\n")


if __name__ == "__main__":
    main()
