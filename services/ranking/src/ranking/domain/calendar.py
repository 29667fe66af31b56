"""Business days: the shop's days start at midnight in its own timezone (Asia/Seoul by default).

Faust's tumbling windows are aligned to the Unix epoch, i.e. to midnight UTC. Windows are
therefore fed the *local wall-clock* time of an event, counted in seconds from 1970-01-01
00:00 local: 1-day windows over that timeline start exactly at local midnight, whatever the
zone's UTC offset, and stay one calendar day long across DST changes.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

DAY_S = 86_400.0
HOUR_S = 3_600.0
_EPOCH = datetime(1970, 1, 1)
_EPOCH_DAY = date(1970, 1, 1)


@dataclass(frozen=True)
class DayRange:
    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class BusinessCalendar:
    tz: ZoneInfo

    def day_of(self, at: datetime) -> date:
        """The business day an instant (tz-aware) falls on."""
        return at.astimezone(self.tz).date()

    def wall_clock(self, at: datetime) -> float:
        """Seconds from 1970-01-01 00:00 *local* to `at`'s local time: what windows see."""
        return (at.astimezone(self.tz).replace(tzinfo=None) - _EPOCH).total_seconds()

    @staticmethod
    def day_starting(window_start: float) -> date:
        """The business day of a window that starts at `window_start` (wall-clock seconds)."""
        return _EPOCH_DAY + timedelta(days=int(window_start // DAY_S))

    def completed_days(self, now: datetime, count: int) -> DayRange:
        """The last `count` days that ended before `now` (today is not complete)."""
        today = self.day_of(now)
        return DayRange(first=today - timedelta(days=count), last=today - timedelta(days=1))

    def oldest_kept(self, now: datetime, retention_days: int) -> date:
        return self.day_of(now) - timedelta(days=retention_days)
