"""The stream's state is bounded: sales for the retention days, and nothing else. (The event ids
that catch copies of an event are not held in memory: they are claims in the ranking DB, pruned
by shopkit.database.retention once no replay can bring the event back.)"""

from datetime import UTC, datetime

from ranking.config import Settings
from ranking.domain.calendar import DAY_S
from ranking.stream.app import SalesStream


async def test_old_windows_are_dropped_after_the_retention_days(tmp_path: object) -> None:
    settings = Settings(retention_days=7, stream_data_dir=str(tmp_path))
    stream = SalesStream(settings)
    now = stream.calendar.wall_clock(datetime.now(UTC))
    day = now - now % DAY_S
    sales = stream.sales.table.data
    for days_ago in (0, 6, 9):
        start = day - days_ago * DAY_S
        sales[(f"sale-{days_ago}d", (start, start + DAY_S - 0.1))] = {"qty": 1}

    await stream._drop_old_days()

    assert sorted(k[0] for k in sales.keys()) == ["sale-0d", "sale-6d"]
    assert [table.name for table in stream.app.tables.values()] == [stream.sales.name]
