"""All of the order service's SQL: orders and their lines, the row locks of the saga steps and
the deadline sweeper, and the wiring of the aggregate's events into the outbox and NOTIFY."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order.adapters.tables import OrderLineRow, OrderRow
from order.domain.order import Line, LineStatus, Order, OrderStatus, Pricing
from shop_contracts import ExclusionReason, FailureReason, OrderFailed, OrderPaid
from shopkit.outbox import Outbox

ORDER_DONE_CHANNEL: Final = "order_done"
"""NOTIFY channel; the payload is the id of an order that just reached PAID or FAILED."""

outbox = Outbox(producer="order")

_orders = OrderRow.__table__
_lines = OrderLineRow.__table__


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._stored_lines: dict[UUID, list[Line]] = {}

    async def add(self, order: Order) -> None:
        await self.session.execute(insert(OrderRow).values(**_order_row(order)))
        await self.session.execute(
            insert(OrderLineRow),
            [
                _line_row(order.order_id, position, line)
                for position, line in enumerate(order.lines)
            ],
        )
        self._stored_lines[order.order_id] = list(order.lines)
        await self._publish(order)

    async def get(self, order_id: UUID) -> Order | None:
        found = await self._load(select(_orders).where(_orders.c.order_id == order_id))
        return found[0] if found else None

    async def get_for_update(self, order_id: UUID) -> Order | None:
        """The order with its row locked until the transaction ends (saga steps serialize here)."""
        found = await self._load(
            select(_orders).where(_orders.c.order_id == order_id).with_for_update()
        )
        return found[0] if found else None

    async def lock_overdue(self, now: datetime, limit: int) -> list[Order]:
        """Up to `limit` PENDING orders past their deadline, locked; rows another transaction
        holds are skipped, so N sweepers share the work."""
        return await self._load(
            select(_orders)
            .where(
                _orders.c.status == OrderStatus.PENDING.value,
                _orders.c.deadline_at <= now,
            )
            .order_by(_orders.c.deadline_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )

    async def of_user(self, user_id: int, limit: int) -> list[Order]:
        """Newest first."""
        return await self._load(
            select(_orders)
            .where(_orders.c.user_id == user_id)
            .order_by(_orders.c.created_at.desc(), _orders.c.order_id.desc())
            .limit(limit)
        )

    async def save(self, order: Order) -> None:
        """Writes what changed, stages the recorded events and, when the order just ended,
        notifies the API processes (NOTIFY is delivered only if the transaction commits)."""
        row = _order_row(order)
        for immutable in ("order_id", "user_id", "user_coupon_id", "created_at", "deadline_at"):
            del row[immutable]
        await self.session.execute(
            update(OrderRow).where(OrderRow.order_id == order.order_id).values(**row)
        )
        stored = self._stored_lines.get(order.order_id, [])
        changed = [
            _line_row(order.order_id, position, line)
            for position, line in enumerate(order.lines)
            if position >= len(stored) or stored[position] != line
        ]
        if changed:
            await self.session.execute(update(OrderLineRow), changed)
        self._stored_lines[order.order_id] = list(order.lines)
        await self._publish(order)

    async def _publish(self, order: Order) -> None:
        ended = False
        for event in order.pull_events():
            outbox.stage(self.session, event)
            ended = ended or isinstance(event, OrderPaid | OrderFailed)
        if ended:
            await self.session.execute(
                select(func.pg_notify(ORDER_DONE_CHANNEL, str(order.order_id)))
            )

    async def _load(self, stmt: Select[Any]) -> list[Order]:
        rows = (await self.session.execute(stmt)).all()
        if not rows:
            return []
        line_rows = (
            await self.session.execute(
                select(_lines)
                .where(_lines.c.order_id.in_([r.order_id for r in rows]))
                .order_by(_lines.c.order_id, _lines.c.position)
            )
        ).all()
        lines: dict[UUID, list[Line]] = {}
        for lr in line_rows:
            lines.setdefault(lr.order_id, []).append(
                Line(
                    product_id=lr.product_id,
                    quantity=lr.quantity,
                    status=LineStatus(lr.status),
                    name=lr.name,
                    unit_price=lr.unit_price,
                    excluded_reason=ExclusionReason(lr.excluded_reason)
                    if lr.excluded_reason
                    else None,
                )
            )
        orders = [_to_order(r, lines.get(r.order_id, [])) for r in rows]
        for order in orders:
            self._stored_lines[order.order_id] = list(order.lines)
        return orders


def _to_order(row: Any, lines: Sequence[Line]) -> Order:
    return Order(
        order_id=row.order_id,
        user_id=row.user_id,
        lines=list(lines),
        user_coupon_id=row.user_coupon_id,
        created_at=row.created_at,
        deadline_at=row.deadline_at,
        status=OrderStatus(row.status),
        failure_reason=FailureReason(row.failure_reason) if row.failure_reason else None,
        stock_reserved=row.stock_reserved,
        pricing=Pricing(subtotal=row.subtotal, discount=row.discount, total=row.total)
        if row.total is not None
        else None,
        paid_amount=row.paid_amount,
        paid_at=row.paid_at,
        finished_at=row.finished_at,
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
        "status": line.status.value,
        "excluded_reason": line.excluded_reason.value if line.excluded_reason else None,
        "name": line.name,
        "unit_price": line.unit_price,
    }
