"""All of the ranking service's SQL."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession

from ranking.adapters.tables import DailySales, Snapshot, SnapshotItem
from ranking.domain.calendar import DayRange
from ranking.domain.ranking import ProductSales, RankedProduct, Ranking
from shopkit.database.engine import Prepared
from shopkit.database.uow import UnitOfWork


@dataclass(frozen=True)
class DailySalesRow:
    day: date
    product_id: int
    shard: int
    quantity: int
    name: str
    price: int
    last_sold_at: datetime


_LATEST_SNAPSHOT_ID = Prepared(select(func.max(Snapshot.id)))


async def latest_snapshot_id(uow: UnitOfWork) -> int | None:
    """The hot read: the unit of work's one prepared statement (`uow.alone`), no session."""
    row = await uow.alone(_LATEST_SNAPSHOT_ID)
    return None if row is None else row[0]


class RankingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def save_daily_sales(self, rows: Sequence[DailySalesRow]) -> None:
        """Upsert counts; a row changes only when its count grows (so stale writes lose)."""
        if not rows:
            return
        stmt = insert(DailySales).values(
            [
                {
                    "day": r.day,
                    "product_id": r.product_id,
                    "shard": r.shard,
                    "quantity": r.quantity,
                    "name": r.name,
                    "price": r.price,
                    "last_sold_at": r.last_sold_at,
                }
                for r in rows
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[DailySales.day, DailySales.product_id, DailySales.shard],
            set_={
                "quantity": stmt.excluded.quantity,
                "name": stmt.excluded.name,
                "price": stmt.excluded.price,
                "last_sold_at": stmt.excluded.last_sold_at,
                "updated_at": func.now(),
            },
            where=stmt.excluded.quantity > DailySales.quantity,
        )
        await self.session.execute(stmt)

    async def best_sellers(self, days: DayRange, limit: int) -> list[ProductSales]:
        """Units per product over `days`, most sold first, ties by product id; the name and
        price are those of the product's latest sale."""
        in_range = DailySales.day.between(days.first, days.last)
        totals = (
            select(DailySales.product_id, func.sum(DailySales.quantity).label("sold"))
            .where(in_range)
            .group_by(DailySales.product_id)
            .subquery()
        )
        latest = (
            select(DailySales.product_id, DailySales.name, DailySales.price)
            .where(in_range)
            .ext(distinct_on(DailySales.product_id))
            .order_by(DailySales.product_id, DailySales.last_sold_at.desc())
            .subquery()
        )
        stmt = (
            select(totals.c.product_id, latest.c.name, latest.c.price, totals.c.sold)
            .join(latest, latest.c.product_id == totals.c.product_id)
            .where(totals.c.sold > 0)
            .order_by(totals.c.sold.desc(), totals.c.product_id)
            .limit(limit)
        )
        return [
            ProductSales(product_id=r.product_id, name=r.name, price=r.price, sold_quantity=r.sold)
            for r in (await self.session.execute(stmt)).all()
        ]

    async def add_snapshot(self, ranking: Ranking) -> None:
        snapshot = Snapshot(
            as_of=ranking.as_of,
            first_day=ranking.days.first,
            last_day=ranking.days.last,
            window_days=ranking.days.days,
        )
        self.session.add(snapshot)
        await self.session.flush()
        self.session.add_all(
            SnapshotItem(
                snapshot_id=snapshot.id,
                rank=item.rank,
                product_id=item.product_id,
                name=item.name,
                price=item.price,
                sold_quantity=item.sold_quantity,
            )
            for item in ranking.items
        )

    async def latest_snapshot(self) -> Ranking | None:
        snapshot = await self.session.scalar(select(Snapshot).order_by(Snapshot.id.desc()).limit(1))
        if snapshot is None:
            return None
        items = await self.session.scalars(
            select(SnapshotItem)
            .where(SnapshotItem.snapshot_id == snapshot.id)
            .order_by(SnapshotItem.rank)
        )
        return Ranking(
            as_of=snapshot.as_of,
            days=DayRange(snapshot.first_day, snapshot.last_day),
            items=[
                RankedProduct(i.rank, i.product_id, i.name, i.price, i.sold_quantity) for i in items
            ],
        )

    async def forget_sales_before(self, day: date) -> None:
        await self.session.execute(delete(DailySales).where(DailySales.day < day))
