"""The stream's state is bounded: sales and the event ids that catch copies of a sale are kept
for the retention days, and no longer. As long as a sale can be counted its event id is known,
so a copy of it (a dead letter replayed days later) is never counted twice; an older sale is
ignored anyway. "Days later" here is the windows' age against the wall clock."""

from datetime import UTC, datetime

from ranking.config import Settings
from ranking.domain.calendar import DAY_S, HOUR_S
from ranking.stream.app import SalesStream


async def test_event_ids_are_kept_as_long_as_the_sales_they_protect(tmp_path: object) -> None:
    settings = Settings(retention_days=7, stream_data_dir=str(tmp_path))
    stream = SalesStream(settings)
    now = stream.calendar.wall_clock(datetime.now(UTC))
    hour = now - now % HOUR_S
    day = now - now % DAY_S
    ids = stream.events.table.data
    sales = stream.sales.table.data
    for hours_ago in (0, 8, 6 * 24, 9 * 24):
        start = hour - hours_ago * HOUR_S
        ids[(f"event-{hours_ago}h", (start, start + HOUR_S - 0.1))] = 1
    for days_ago in (0, 6, 9):
        start = day - days_ago * DAY_S
        sales[(f"sale-{days_ago}d", (start, start + DAY_S - 0.1))] = {"qty": 1}

    await stream._drop_old_days()

    assert sorted(k[0] for k in ids.keys()) == ["event-0h", "event-144h", "event-8h"]
    assert sorted(k[0] for k in sales.keys()) == ["sale-0d", "sale-6d"]


def test_a_sale_older_than_the_retention_is_not_counted(tmp_path: object) -> None:
    stream = SalesStream(Settings(retention_days=7, stream_data_dir=str(tmp_path)))
    today = stream.calendar.day_of(datetime.now(UTC))
    assert (today - stream._oldest_kept()).days == 7
    assert stream.events.table.changelog_topic.retention == stream.copies_window.expires
