"""One order, one trace: placed through the gateway with a sampled `traceparent`, its trace is read
back from the local Zipkin's API and holds every step of the saga, from the order API through
product, coupon, point and order to the ranking worker and the data-platform relay, each a
descendant of the step before it, with the steps' database statements inside them."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from shopkit.http.auth import mint
from shopkit.testing import ActAsUser
from shopkit.testing.processes import System, start_rest_of_shop

from .conftest import TRACING, ZIPKIN
from .gateway import Gateway, GatewayShop

pytestmark = pytest.mark.e2e

# (service, span name) of each step, in saga order
SAGA = [
    ("order", "post /orders"),
    ("product", "ordercreated process"),
    ("coupon", "stockreserved process"),
    ("point", "orderpriced process"),
    ("order", "paymentcompleted process"),
]
AFTER_PAID = [("ranking-stream", "orderpaid count"), ("order-relay", "orderpaid deliver")]


@pytest.fixture(scope="module")
async def traced_shop(
    system: System, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayShop]:
    """The whole shop (relay, ranking, stand-in platform too) behind the gateway."""
    async with AsyncExitStack() as stack:
        rest = await start_rest_of_shop(stack, system, TRACING)
        stack.callback(lambda: [system.services.pop(name, None) for name in rest])
        upstreams = {
            name: f"127.0.0.1:{system.services[name].port}"
            for name in ("point", "product", "coupon", "order", "ranking")
        }
        gateway = await stack.enter_async_context(
            Gateway(
                tmp_path_factory.mktemp("traced-gateway"), upstreams, jwt_secret=system.secrets.jwt
            )
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=60, auth=ActAsUser(system.secrets.jwt))
        )
        shop = GatewayShop(http, system, admin_token=mint(system.secrets.jwt, "0", "admin"))
        shop.gateway_url = gateway.url
        yield shop


async def test_one_order_is_one_trace_across_every_service(traced_shop: GatewayShop) -> None:
    shop = traced_shop
    user = shop.new_user()
    product = await shop.create_product("traced tea", price=20_000, stock=5)
    coupon = await shop.create_coupon(discount_value=2_000)
    user_coupon_id = await shop.issue(coupon["id"], user)
    await shop.charge(user, 50_000)

    trace_id = secrets.token_hex(16)
    r = await shop.http.post(
        shop.url("order", "/orders"),
        json={
            "user_id": user,
            "items": [{"product_id": product["id"], "quantity": 1}],
            "user_coupon_id": user_coupon_id,
        },
        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", "Prefer": "wait=30"},
    )
    assert r.status_code in (201, 202), r.text
    assert r.headers["X-Trace-Id"] == trace_id  # what a user's report carries to the trace
    order = await shop.order_until_terminal(r.json()["order_id"])
    assert order["status"] == "PAID", order

    spans = await _trace(trace_id, until=[*SAGA, *AFTER_PAID])
    by_id = {s["id"]: s for s in spans}
    # One tree: every parent is in the trace, and the order API's request is its only root
    # below the caller's (remote) parent.
    roots = [s for s in spans if s.get("parentId") not in by_id]
    assert [(_service(s), s["name"]) for s in roots] == [SAGA[0]], roots

    steps = [_find(spans, *step) for step in SAGA]
    for before, after in zip(steps, steps[1:], strict=False):
        assert before["id"] in _ancestors(after, by_id), (before["name"], after["name"])
        assert after["timestamp"] >= before["timestamp"]
    paid_step = steps[-1]
    for later in AFTER_PAID:
        assert paid_step["id"] in _ancestors(_find(spans, *later), by_id), later
    # The statements of each saga step are inside it.
    for step in steps[1:]:
        statements = [
            s for s in spans if s.get("parentId") == step["id"] and s.get("kind") == "CLIENT"
        ]
        assert any("postgresql" in str(s.get("tags", {})) for s in statements), step["name"]
    # The relay's POST to the data platform carried the trace on.
    deliver = _find(spans, *AFTER_PAID[1])
    assert any(
        s.get("parentId") == deliver["id"] and s["name"].startswith("post") for s in spans
    ), "no HTTP client span under the delivery"


async def _trace(trace_id: str, until: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The trace from Zipkin once it holds every (service, span name) in `until`."""
    deadline = asyncio.get_running_loop().time() + 90
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=10) as http:
        while asyncio.get_running_loop().time() < deadline:
            r = await http.get(f"{ZIPKIN}/api/v2/trace/{trace_id}")
            if r.status_code == 200:
                seen = r.json()
                names = {(_service(s), s["name"]) for s in seen}
                if all(step in names for step in until):
                    return seen
            await asyncio.sleep(1)
    raise AssertionError(
        f"trace {trace_id} lacks some of {until}: {sorted({(_service(s), s['name']) for s in seen})}"
    )


def _service(span: dict[str, Any]) -> str:
    return str(span.get("localEndpoint", {}).get("serviceName", ""))


def _find(spans: list[dict[str, Any]], service: str, name: str) -> dict[str, Any]:
    found = [s for s in spans if _service(s) == service and s["name"] == name]
    assert found, (service, name)
    return found[0]


def _ancestors(span: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    parent = span.get("parentId")
    while parent in by_id and parent not in found:
        found.add(parent)
        parent = by_id[parent].get("parentId")
    return found
