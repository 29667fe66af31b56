"""The daily job and what the API serves. Whoever runs the job (the Faust worker's crontab,
the admin endpoint, `python -m ranking.snapshot`) computes it from the same mirrored counts."""

from datetime import UTC, datetime

from ranking.adapters.repository import RankingRepository, latest_snapshot_id
from ranking.config import Settings
from ranking.domain.calendar import BusinessCalendar
from ranking.domain.ranking import Ranking, rank
from shopkit.database.uow import UnitOfWorkFactory


async def take_snapshot(units: UnitOfWorkFactory, settings: Settings, now: datetime) -> Ranking:
    """Top `top_n` of the last `window_days` completed business days as of `now`; saved.

    `now` is injectable (tests, re-runs); old sales are pruned by the real clock only."""
    calendar = BusinessCalendar(settings.timezone)
    days = calendar.completed_days(now, settings.window_days)
    async with units() as uow:
        repo = RankingRepository(uow.session)
        ranking = Ranking(
            as_of=now.astimezone(UTC),
            days=days,
            items=rank(await repo.best_sellers(days, settings.top_n)),
        )
        await repo.add_snapshot(ranking)
        oldest_kept = calendar.oldest_kept(datetime.now(UTC), settings.retention_days)
        await repo.forget_sales_before(oldest_kept)
        await uow.commit()
    return ranking


class LatestRanking:
    """The latest snapshot, kept in memory: a snapshot never changes once written, so a read
    only asks which one is the latest (its unit of work's one statement, one round trip) and
    loads it only when that is a new one. Always fresh, whichever process wrote it."""

    def __init__(self, units: UnitOfWorkFactory) -> None:
        self._units = units
        self._cached: tuple[int, Ranking] | None = None

    async def get(self) -> Ranking | None:
        async with self._units() as uow:
            latest_id = await latest_snapshot_id(uow)
        if latest_id is None:
            return None
        if self._cached is None or self._cached[0] != latest_id:
            async with self._units() as uow:  # a snapshot and its items: one transaction
                ranking = await RankingRepository(uow.session).latest_snapshot()
            if ranking is None:  # pruned between the two statements: nothing to keep
                return None
            self._cached = (latest_id, ranking)
        return self._cached[1]
