"""All of the order service's SQL: orders and their lines, and the row locks of the saga steps
and the deadline sweeper. (The aggregate's events go to the outbox through the unit of work; an
order that ends NOTIFYs `order_done` from a trigger, see adapters/completions.py.)"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, cast
from uuid import UUID

from sqlalchemy import Select, Table, bindparam, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from order.adapters.tables import OrderLineRow, OrderRow
from order.domain.order import Line, LineStatus, Order, OrderStatus, Pricing
from shop_contracts import ExclusionReason, FailureReason
from shopkit.database.engine import Prepared
from shopkit.database.uow import DbNow, UnitOfWork

_orders = cast(Table, OrderRow.__table__)
_lines = cast(Table, OrderLineRow.__table__)

_lines_of_order = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_array(
                        _lines.c.product_id,
                        _lines.c.quantity,
                        _lines.c.status,
                        _lines.c.excluded_reason,
                        _lines.c.name,
                        _lines.c.unit_price,
                    ),
                    _lines.c.position,
                )
            ),
            literal_column("'[]'::json"),
        )
    )
    .where(_lines.c.order_id == _orders.c.order_id)
    .scalar_subquery()
    .label("lines")
)
_select_orders = select(_orders, _lines_of_order)
"""An order and its lines in one statement (one round trip; a FOR UPDATE locks the order row)."""

# The saga's statements, built once: SQLAlchemy compiles each once and caches it, and Core
# statements on tables skip the ORM's bulk-persistence machinery (a third of the cost).
_ORDER_BY_ID: Final = _select_orders.where(_orders.c.order_id == bindparam("order_id"))
_seen = _orders.alias("seen")
_LOCK_AND_READ: Final = Prepared(
    select(
        _orders,
        _lines_of_order,
        literal_column("orders.xmin::text").label("locked_version"),
        select(literal_column("seen.xmin::text"))
        .where(_seen.c.order_id == _orders.c.order_id)
        .scalar_subquery()
        .label("snapshot_version"),
    )
    .where(_orders.c.order_id == bindparam("order_id"))
    .with_for_update(of=_orders)
)
"""Locks the order and reads it with its lines in one round trip. If the lock had to wait for
another step's commit, the locked row is that step's version but the lines (a subquery) are
read from this statement's older snapshot: the row's version (xmin) then differs from the
snapshot's, and the caller reads the order again (see get_for_update)."""
_MUTABLE: Final = (
    "status",
    "failure_reason",
    "stock_reserved",
    "subtotal",
    "discount",
    "total",
    "paid_amount",
    "paid_at",
    "finished_at",
)
_UPDATE_ORDER: Final = Prepared(
    update(_orders)
    .where(_orders.c.order_id == bindparam("b_order_id"))
    .values({column: bindparam(column) for column in _MUTABLE})
)
_UPDATE_LINE: Final = Prepared(
    update(_lines)
    .where(
        _lines.c.order_id == bindparam("b_order_id"),
        _lines.c.position == bindparam("b_position"),
    )
    .values(
        {
            column: bindparam(column)
            for column in ("status", "excluded_reason", "name", "unit_price")
        }
    )
)


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._stored_lines: dict[UUID, list[Line]] = {}

    def add(self, order: Order, uow: UnitOfWork) -> None:
        """A new order and its lines, written when `uow` commits (with its events: placing an
        order is then one statement)."""
        # The deadline is set on the database's clock, the one the sweeper reads (never a
        # process's clock: API and worker machines may disagree).
        timeout = order.deadline_at - order.created_at
        uow.insert(_orders, [_order_row(order) | {"deadline_at": DbNow(timeout)}])
        uow.insert(
            _lines,
            [
                _line_row(order.order_id, position, line)
                for position, line in enumerate(order.lines)
            ],
        )
        self._stored_lines[order.order_id] = list(order.lines)

    async def get(self, order_id: UUID) -> Order | None:
        found = await self._load(_ORDER_BY_ID, {"order_id": order_id})
        return found[0] if found else None

    async def get_for_update(self, order_id: UUID) -> Order | None:
        """The order with its row locked until the transaction ends (saga steps serialize here).

        A statement that waits for a row lock re-reads only the locked row when the lock is
        granted, not its subqueries: one `SELECT … FOR UPDATE` with the lines aggregated would
        see the lines as they were before the previous step committed. The row's version tells
        when that happened (rarely: only steps of one order racing), and then the order is read
        again, under the lock, by a new statement with a new snapshot."""
        row = await _LOCK_AND_READ.fetchrow(self.session, order_id=order_id)
        if row is None:
            return None
        if row["locked_version"] != row["snapshot_version"]:
            return await self.get(order_id)
        order = _to_order(row)
        self._stored_lines[order.order_id] = list(order.lines)
        return order

    async def database_now(self) -> datetime:
        """The database's clock (its transaction's start): deadlines are set and read on it."""
        now = await self.session.scalar(select(func.now()))
        assert isinstance(now, datetime)
        return now

    async def lock_overdue(self, now: datetime, limit: int) -> list[Order]:
        """Up to `limit` PENDING orders past their deadline, locked; rows another transaction
        holds are skipped, so N sweepers share the work."""
        locked = (
            await self.session.scalars(
                select(_orders.c.order_id)
                .where(
                    _orders.c.status == OrderStatus.PENDING.value,
                    _orders.c.deadline_at <= now,
                )
                .order_by(_orders.c.deadline_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not locked:
            return []
        # re-read after locking (see get_for_update); a step may have ended one meanwhile
        return await self._load(_select_orders.where(_orders.c.order_id.in_(locked)))

    async def of_user(self, user_id: int, limit: int) -> list[Order]:
        """Newest first."""
        return await self._load(
            _select_orders.where(_orders.c.user_id == user_id)
            .order_by(_orders.c.created_at.desc(), _orders.c.order_id.desc())
            .limit(limit)
        )

    async def save(self, order: Order) -> None:
        """Writes the order and the lines that changed."""
        row = _order_row(order)
        await _UPDATE_ORDER.fetch(
            self.session,
            b_order_id=order.order_id,
            **{column: row[column] for column in _MUTABLE},
        )
        stored = self._stored_lines.get(order.order_id, [])
        changed = [
            {"b_order_id": order.order_id, "b_position": position, **_line_values(line)}
            for position, line in enumerate(order.lines)
            if position >= len(stored) or stored[position] != line
        ]
        if changed:
            await _UPDATE_LINE.executemany(self.session, changed)
        self._stored_lines[order.order_id] = list(order.lines)

    async def _load(self, stmt: Select[Any], params: dict[str, Any] | None = None) -> list[Order]:
        result = await self.session.execute(stmt, params)
        orders = [_to_order(row._mapping) for row in result.all()]
        for order in orders:
            self._stored_lines[order.order_id] = list(order.lines)
        return orders


def _to_order(row: Mapping[str, Any]) -> Order:
    """From a row of _select_orders: SQLAlchemy's (its _mapping) or the driver's Record."""
    return Order(
        order_id=row["order_id"],
        user_id=row["user_id"],
        lines=[_to_line(*values) for values in row["lines"]],
        user_coupon_id=row["user_coupon_id"],
        created_at=row["created_at"],
        deadline_at=row["deadline_at"],
        status=OrderStatus(row["status"]),
        failure_reason=FailureReason(row["failure_reason"]) if row["failure_reason"] else None,
        stock_reserved=row["stock_reserved"],
        pricing=Pricing(subtotal=row["subtotal"], discount=row["discount"], total=row["total"])
        if row["total"] is not None
        else None,
        paid_amount=row["paid_amount"],
        paid_at=row["paid_at"],
        finished_at=row["finished_at"],
    )


def _to_line(
    product_id: int,
    quantity: int,
    status: str,
    excluded_reason: str | None,
    name: str | None,
    unit_price: int | None,
) -> Line:
    return Line(
        product_id=product_id,
        quantity=quantity,
        status=LineStatus(status),
        name=name,
        unit_price=unit_price,
        excluded_reason=ExclusionReason(excluded_reason) if excluded_reason else None,
    )


def _order_row(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "user_id": order.user_id,
        "user_coupon_id": order.user_coupon_id,
        "status": order.status.value,
        "failure_reason": order.failure_reason.value if order.failure_reason else None,
        "stock_reserved": order.stock_reserved,
        "subtotal": order.subtotal,
        "discount": order.discount,
        "total": order.total,
        "paid_amount": order.paid_amount,
        "created_at": order.created_at,
        "deadline_at": order.deadline_at,
        "paid_at": order.paid_at,
        "finished_at": order.finished_at,
    }


def _line_row(order_id: UUID, position: int, line: Line) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "position": position,
        "product_id": line.product_id,
        "quantity": line.quantity,
        **_line_values(line),
    }


def _line_values(line: Line) -> dict[str, Any]:
    """What a saga step may change on a line."""
    return {
        "status": line.status.value,
        "excluded_reason": line.excluded_reason.value if line.excluded_reason else None,
        "name": line.name,
        "unit_price": line.unit_price,
    }
