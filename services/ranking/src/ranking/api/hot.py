"""The top-5 read, served as a hot route (shopkit.http.fast): the same response model and use case as
routes.top_products, without FastAPI's per-request machinery. A snapshot never changes, so its
answer is rendered once: the next reads of the same snapshot send the same bytes."""

from ranking.api.schemas import TopProductsResponse
from ranking.domain.ranking import Ranking
from ranking.service.snapshots import LatestRanking
from shopkit.http.fast import HotRequest, HotRoute, Reply

_rendered: tuple[Ranking | None, int, Reply] | None = None
"""The last answer, with the snapshot (the very object LatestRanking keeps) and window it shows."""


async def top_products(request: HotRequest) -> Reply | None:
    global _rendered
    state = request.state
    latest: LatestRanking = state.latest_ranking
    ranking = await latest.get()
    window_days: int = state.settings.window_days
    if _rendered is not None and _rendered[0] is ranking and _rendered[1] == window_days:
        return _rendered[2]
    reply = Reply.model(200, TopProductsResponse.of(ranking, window_days))
    _rendered = (ranking, window_days, reply)
    return reply


HOT_ROUTES = (HotRoute("GET", "/rankings/top-products", top_products),)
