"""The stream's state is bounded: sales for the retention days, the event ids that catch copies
of an event for hours only (not a week of every order)."""

from datetime import UTC, datetime

from ranking.config import Settings
from ranking.domain.calendar import DAY_S, HOUR_S
from ranking.stream.app import SalesStream


async def test_old_windows_are_dropped_event_ids_after_hours_sales_after_days(
    tmp_path: object,
) -> None:
    settings = Settings(dedupe_hours=6, retention_days=7, stream_data_dir=str(tmp_path))
    stream = SalesStream(settings)
    now = stream.calendar.wall_clock(datetime.now(UTC))
    hour = now - now % HOUR_S
    day = now - now % DAY_S
    ids = stream.events.table.data
    sales = stream.sales.table.data
    for hours_ago in (0, 5, 8, 48):
        start = hour - hours_ago * HOUR_S
        ids[(f"event-{hours_ago}h", (start, start + HOUR_S - 0.1))] = 1
    for days_ago in (0, 6, 9):
        start = day - days_ago * DAY_S
        sales[(f"sale-{days_ago}d", (start, start + DAY_S - 0.1))] = {"qty": 1}

    await stream._drop_old_days()

    assert sorted(k[0] for k in ids.keys()) == ["event-0h", "event-5h"]
    assert sorted(k[0] for k in sales.keys()) == ["sale-0d", "sale-6d"]
