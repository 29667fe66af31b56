"""Use cases behind the HTTP API, one transaction each."""

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from product.adapters.repository import ProductRepository, ProductRow, read_product
from product.adapters.tables import Product
from product.domain.catalogue import ProductNotFound
from shopkit.database.engine import autocommit


async def list_products(session: AsyncSession) -> Sequence[Product]:
    return await ProductRepository(await autocommit(session)).all()


async def get_product(engine: AsyncEngine, product_id: int) -> ProductRow:
    """One statement in autocommit: one round trip."""
    product = await read_product(engine, product_id)
    if product is None:
        raise ProductNotFound(product_id)
    return product


async def create_product(session: AsyncSession, name: str, price: int, stock: int) -> Product:
    async with session.begin():
        return await ProductRepository(session).add(name, price, stock)


async def set_stock(session: AsyncSession, product_id: int, stock: int) -> Product:
    """Sets what is left to sell (reservations already taken are not affected)."""
    async with session.begin():
        product = await ProductRepository(session).set_stock(product_id, stock)
    if product is None:
        raise ProductNotFound(product_id)
    return product
