from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from faust.windows import TumblingWindow

from ranking.domain.calendar import DAY_S, BusinessCalendar, DayRange

SEOUL = BusinessCalendar(ZoneInfo("Asia/Seoul"))
KST = timezone(timedelta(hours=9))


def faust_day(calendar: BusinessCalendar, at: datetime) -> date:
    """The business day of the Faust tumbling window an event at `at` is counted in."""
    start, _ = TumblingWindow(DAY_S).current(calendar.wall_clock(at))
    return calendar.day_starting(start)


@pytest.mark.parametrize(
    ("at", "day"),
    [
        (datetime(2026, 3, 9, 23, 59, 59, tzinfo=KST), date(2026, 3, 9)),
        (datetime(2026, 3, 10, 0, 0, 0, tzinfo=KST), date(2026, 3, 10)),
        (datetime(2026, 3, 9, 15, 0, 0, tzinfo=UTC), date(2026, 3, 10)),  # 00:00 KST
        (datetime(2026, 3, 9, 14, 59, 59, tzinfo=UTC), date(2026, 3, 9)),
    ],
)
def test_a_sale_counts_on_its_day_in_seoul_not_in_utc(at: datetime, day: date) -> None:
    assert SEOUL.day_of(at) == day
    assert faust_day(SEOUL, at) == day


def test_windows_stay_one_local_day_across_a_dst_change() -> None:
    new_york = BusinessCalendar(ZoneInfo("America/New_York"))
    tz = new_york.tz
    # 2026-03-08 is 23 hours long in New York
    for at, day in [
        (datetime(2026, 3, 8, 0, 0, tzinfo=tz), date(2026, 3, 8)),
        (datetime(2026, 3, 8, 23, 59, tzinfo=tz), date(2026, 3, 8)),
        (datetime(2026, 3, 9, 0, 0, tzinfo=tz), date(2026, 3, 9)),
        (datetime(2026, 3, 7, 23, 59, tzinfo=tz), date(2026, 3, 7)),
    ]:
        assert faust_day(new_york, at) == day


def test_the_completed_days_end_yesterday() -> None:
    just_after_midnight = datetime(2026, 3, 10, 0, 1, tzinfo=KST)
    assert SEOUL.completed_days(just_after_midnight, 3) == DayRange(
        date(2026, 3, 7), date(2026, 3, 9)
    )
    assert SEOUL.completed_days(datetime(2026, 3, 10, 23, 59, tzinfo=KST), 3).last == date(
        2026, 3, 9
    )
    assert DayRange(date(2026, 3, 7), date(2026, 3, 9)).days == 3
