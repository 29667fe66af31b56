from fastapi import APIRouter, Request

from product.adapters.repository import ProductRow
from product.api.schemas import NewProduct, ProductList, ProductResponse, StockUpdate
from product.domain.catalogue import ProductNotFound
from product.service import catalogue
from shopkit.http.answers import raises
from shopkit.http.app import IdPath, UnitsOfWork
from shopkit.http.auth import AdminClaims
from shopkit.http.fast import fast
from shopkit.ops.runtime import Runtime

router = APIRouter(tags=["products"])


def _out(product: ProductRow) -> ProductResponse:
    return ProductResponse.model_validate(product, from_attributes=True)


@router.get("/products", response_model=ProductList)
async def list_products(units: UnitsOfWork) -> ProductList:
    return ProductList(items=[_out(p) for p in await catalogue.list_products(units)])


@router.get(
    "/products/{product_id}", response_model=ProductResponse, responses=raises(ProductNotFound)
)
@fast
async def get_product(request: Request, product_id: IdPath) -> ProductResponse:
    # From the app's state, not a dependency: the hot route pays for no dependency per request.
    runtime: Runtime = request.app.state.runtime
    return _out(await catalogue.get_product(runtime.api_unit_of_work, product_id))


@router.post("/products", response_model=ProductResponse, status_code=201)
async def create_product(body: NewProduct, units: UnitsOfWork, _: AdminClaims) -> ProductResponse:
    return _out(await catalogue.create_product(units, body.name, body.price, body.stock))


@router.put(
    "/products/{product_id}/stock",
    response_model=ProductResponse,
    responses=raises(ProductNotFound),
)
async def set_stock(
    product_id: IdPath, body: StockUpdate, units: UnitsOfWork, _: AdminClaims
) -> ProductResponse:
    return _out(await catalogue.set_stock(units, product_id, body.stock))
