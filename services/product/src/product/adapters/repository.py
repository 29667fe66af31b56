"""All of the product service's SQL. Stock changes only through one conditional statement per
product (`stock = stock ± q`, guarded by `stock >= q` when taking), never read-modify-write."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple, cast
from uuid import UUID

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy import insert as plain_insert
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from product.adapters.tables import Product, ReservationLine, ReservationOrder
from product.domain.reservation import ReservationStatus
from shop_contracts import ReservedLine
from shopkit.database.engine import Prepared
from shopkit.database.uow import UnitOfWork


@dataclass(frozen=True)
class Taken:
    name: str
    unit_price: int


@dataclass(frozen=True)
class Released:
    product_id: int
    quantity: int


class ProductRow(NamedTuple):
    """A product as every read and write of the catalogue returns it (never an ORM row)."""

    id: int
    name: str
    price: int
    stock: int


_products = cast(Table, Product.__table__)
_COLUMNS: Final = (_products.c.id, _products.c.name, _products.c.price, _products.c.stock)
"""A ProductRow's columns, in its order."""
_PRODUCT_ROW: Final = Prepared(select(*_COLUMNS).where(_products.c.id == bindparam("product_id")))


async def read_product(uow: UnitOfWork, product_id: int) -> ProductRow | None:
    """The hot read: the unit of work's one prepared statement (`uow.alone`), no session."""
    row = await uow.alone(_PRODUCT_ROW, product_id=product_id)
    return None if row is None else ProductRow(*row)


_orders = cast(Table, ReservationOrder.__table__)

# The saga's and the reads' statements, built once (compiled once, cached by SQLAlchemy).
_EXISTS: Final = select(_products.c.id).where(_products.c.id == bindparam("product_id"))
_TAKE_STOCK: Final = Prepared(
    update(_products)
    .where(_products.c.id == bindparam("product_id"), _products.c.stock >= bindparam("quantity"))
    .values(stock=_products.c.stock - bindparam("quantity"))
    .returning(_products.c.name, _products.c.price)
)
_CLAIM_ORDER: Final = Prepared(
    insert(_orders)
    .values(
        order_id=bindparam("order_id"), user_id=bindparam("user_id"), status=bindparam("status")
    )
    .on_conflict_do_nothing(index_elements=[_orders.c.order_id])
    .returning(_orders.c.order_id)
)
_LINE_COLUMNS: Final = ("order_id", "product_id", "quantity", "unit_price", "name", "status")
_RECORD_LINES: Final = Prepared(
    plain_insert(cast(Table, ReservationLine.__table__)).values(
        {c: bindparam(c) for c in _LINE_COLUMNS}
    )
)
"""The saga step's statements run by the driver (shopkit.database.engine.Prepared)."""


class ProductRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # the catalogue

    async def all(self) -> list[ProductRow]:
        rows = await self.session.execute(select(*_COLUMNS).order_by(_products.c.id))
        return [ProductRow(*row) for row in rows]

    async def add(self, name: str, price: int, stock: int) -> ProductRow:
        stmt = (
            plain_insert(_products).values(name=name, price=price, stock=stock).returning(*_COLUMNS)
        )
        return ProductRow(*(await self.session.execute(stmt)).one())

    async def set_stock(self, product_id: int, stock: int) -> ProductRow | None:
        stmt = (
            update(_products)
            .where(_products.c.id == product_id)
            .values(stock=stock)
            .returning(*_COLUMNS)
        )
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else ProductRow(*row)

    # reservations

    async def exists(self, product_id: int) -> bool:
        return await self.session.scalar(_EXISTS, {"product_id": product_id}) is not None

    async def take_stock(self, product_id: int, quantity: int) -> Taken | None:
        """Takes `quantity` if that much is left; the product's name and price, or None."""
        row = await _TAKE_STOCK.fetchrow(self.session, product_id=product_id, quantity=quantity)
        return None if row is None else Taken(name=row["name"], unit_price=row["price"])

    async def give_back(self, product_id: int, quantity: int) -> None:
        await self.session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(stock=Product.stock + quantity)
            .execution_options(synchronize_session=False)
        )

    async def claim_order(self, order_id: UUID, user_id: int, status: ReservationStatus) -> bool:
        """Creates the order's reservation row; False when the order already has one."""
        claimed = await _CLAIM_ORDER.fetchrow(
            self.session, order_id=order_id, user_id=user_id, status=status.value
        )
        return claimed is not None

    async def set_order_status(self, order_id: UUID, status: ReservationStatus) -> None:
        await self.session.execute(
            update(ReservationOrder)
            .where(ReservationOrder.order_id == order_id)
            .values(status=status.value)
            .execution_options(synchronize_session=False)
        )

    async def record_lines(self, order_id: UUID, lines: Sequence[ReservedLine]) -> None:
        if not lines:
            return
        await _RECORD_LINES.executemany(
            self.session,
            [
                {
                    "order_id": order_id,
                    "product_id": line.product_id,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "name": line.name,
                    "status": ReservationStatus.RESERVED.value,
                }
                for line in lines
            ],
        )

    async def mark_released(self, order_id: UUID) -> bool:
        """RESERVED → RELEASED, once; True if this call did it."""
        stmt = (
            update(ReservationOrder)
            .where(
                ReservationOrder.order_id == order_id,
                ReservationOrder.status == ReservationStatus.RESERVED.value,
            )
            .values(status=ReservationStatus.RELEASED.value)
            .returning(ReservationOrder.order_id)
            .execution_options(synchronize_session=False)
        )
        return await self.session.scalar(stmt) is not None

    async def release_lines(self, order_id: UUID) -> list[Released]:
        """Marks the order's reserved lines released; what they held, in product-id order."""
        stmt = (
            update(ReservationLine)
            .where(
                ReservationLine.order_id == order_id,
                ReservationLine.status == ReservationStatus.RESERVED.value,
            )
            .values(status=ReservationStatus.RELEASED.value)
            .returning(ReservationLine.product_id, ReservationLine.quantity)
            .execution_options(synchronize_session=False)
        )
        rows = (await self.session.execute(stmt)).all()
        return sorted(
            (Released(product_id=r.product_id, quantity=r.quantity) for r in rows),
            key=lambda r: r.product_id,
        )
