"""A product read, served as a hot route (shopkit.http.fast): the same response model and use case as
routes.get_product, without FastAPI's per-request machinery."""

from product.api.schemas import ProductResponse
from product.service import catalogue
from shopkit.http.fast import HotRequest, HotRoute, Reply


async def get_product(request: HotRequest) -> Reply | None:
    (product_id,) = request.ids
    product = await catalogue.get_product(request.state.runtime.api_engine, product_id)
    return Reply.model(200, ProductResponse.model_validate(product, from_attributes=True))


HOT_ROUTES = (HotRoute("GET", "/products/{product_id}", get_product),)
