"""The top-5 read, served as a hot route (shopkit.hot): the same response model and use case as
routes.top_products, without FastAPI's per-request machinery."""

from ranking.api.schemas import TopProductsResponse
from ranking.service.snapshots import LatestRanking
from shopkit.hot import HotRequest, HotRoute, Reply


async def top_products(request: HotRequest) -> Reply | None:
    state = request.state
    latest: LatestRanking = state.latest_ranking
    ranking = await latest.get()
    return Reply.model(200, TopProductsResponse.of(ranking, state.settings.window_days))


HOT_ROUTES = (HotRoute("GET", "/rankings/top-products", top_products),)
