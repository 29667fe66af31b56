from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from product.adapters.tables import Product
from product.api.schemas import NewProduct, ProductList, ProductResponse, StockUpdate
from product.service import catalogue
from shopkit.http.app import IdPath, session
from shopkit.http.auth import AdminClaims
from shopkit.http.fast import fast

router = APIRouter(tags=["products"])
Db = Annotated[AsyncSession, Depends(session)]


def _out(product: Product) -> ProductResponse:
    return ProductResponse.model_validate(product, from_attributes=True)


@router.get("/products", response_model=ProductList)
async def list_products(db: Db) -> ProductList:
    return ProductList(items=[_out(p) for p in await catalogue.list_products(db)])


@router.get("/products/{product_id}", response_model=ProductResponse)
@fast
async def get_product(request: Request, product_id: IdPath) -> ProductResponse:
    product = await catalogue.get_product(request.app.state.runtime.api_engine, product_id)
    return ProductResponse.model_validate(product, from_attributes=True)


@router.post("/products", response_model=ProductResponse, status_code=201)
async def create_product(body: NewProduct, db: Db, _: AdminClaims) -> ProductResponse:
    return _out(await catalogue.create_product(db, body.name, body.price, body.stock))


@router.put("/products/{product_id}/stock", response_model=ProductResponse)
async def set_stock(
    product_id: IdPath, body: StockUpdate, db: Db, _: AdminClaims
) -> ProductResponse:
    return _out(await catalogue.set_stock(db, product_id, body.stock))
