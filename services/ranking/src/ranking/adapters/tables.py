from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from shopkit.database.engine import Base


class DailySales(Base):
    """The Faust table's counts, mirrored: units of a product sold on a business day.

    `shard` is the ORDER_EVENTS partition the sales came from: the stream counts per
    (product, partition) so that each count has exactly one writer and is restored from one
    changelog partition; the ranking sums the shards. Rows are written with absolute values
    that only grow, so a late or repeated write never lowers a count.
    """

    __tablename__ = "daily_sales"
    __table_args__ = (CheckConstraint("quantity >= 0", name="quantity_not_negative"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    product_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    quantity: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(500))
    price: Mapped[int] = mapped_column(BigInteger)
    last_sold_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Snapshot(Base):
    """One run of the daily job: the top list as of `as_of`, over [first_day, last_day]."""

    __tablename__ = "ranking_snapshots"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    as_of: Mapped[datetime]
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    window_days: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SnapshotItem(Base):
    __tablename__ = "ranking_snapshot_items"

    snapshot_id: Mapped[int] = mapped_column(
        ForeignKey("ranking_snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(500))
    price: Mapped[int] = mapped_column(BigInteger)
    sold_quantity: Mapped[int] = mapped_column(BigInteger)
