"""Use cases behind the HTTP API, one unit of work each (shopkit.database.uow)."""

from product.adapters.repository import ProductRepository, ProductRow, read_product
from product.domain.catalogue import ProductNotFound
from shopkit.database.uow import UnitOfWorkFactory


async def list_products(units: UnitOfWorkFactory) -> list[ProductRow]:
    async with units() as uow:
        return await ProductRepository(await uow.read_only()).all()


async def get_product(units: UnitOfWorkFactory, product_id: int) -> ProductRow:
    """The hot read: one statement alone, one round trip."""
    async with units() as uow:
        product = await read_product(uow, product_id)
    if product is None:
        raise ProductNotFound(product_id)
    return product


async def create_product(units: UnitOfWorkFactory, name: str, price: int, stock: int) -> ProductRow:
    async with units() as uow:
        product = await ProductRepository(uow.session).add(name, price, stock)
        await uow.commit()
    return product


async def set_stock(units: UnitOfWorkFactory, product_id: int, stock: int) -> ProductRow:
    """Sets what is left to sell (reservations already taken are not affected)."""
    async with units() as uow:
        product = await ProductRepository(uow.session).set_stock(product_id, stock)
        await uow.commit()
    if product is None:
        raise ProductNotFound(product_id)
    return product
