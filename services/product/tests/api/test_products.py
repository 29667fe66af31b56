"""The catalogue API over real HTTP against a real database: every row of API.md, and every
error answering problem+json and changing nothing."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from product.config import Settings
from shopkit.http.auth import mint

PROBLEM = "application/problem+json"
MAX_ID = 2**63 - 1
NewProduct = Callable[..., Awaitable[dict[str, Any]]]


async def catalogue(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/products")
    assert r.status_code == 200
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = r.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["title"]
    assert problem["detail"]
    return problem


async def test_admin_creates_a_product_that_anyone_can_read(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post(
        "/products",
        json={"name": "제주 감귤 5kg", "price": 25_900, "stock": 30},
        headers=admin,
    )
    assert r.status_code == 201
    created = r.json()
    assert created == {"id": created["id"], "name": "제주 감귤 5kg", "price": 25_900, "stock": 30}
    assert isinstance(created["id"], int)
    assert created["id"] >= 1
    assert (await client.get(f"/products/{created['id']}")).json() == created
    assert created in await catalogue(client)


async def test_products_are_listed_by_id(
    client: httpx.AsyncClient, new_product: NewProduct
) -> None:
    made = [await new_product(name=f"item {i}") for i in range(3)]
    items = await catalogue(client)
    ids = [i["id"] for i in items]
    assert ids == sorted(ids)
    assert all(m in items for m in made)


async def test_set_stock_replaces_what_is_left_and_sold_out_shows_zero(
    client: httpx.AsyncClient, admin: dict[str, str], new_product: NewProduct
) -> None:
    product = await new_product(stock=5)
    r = await client.put(f"/products/{product['id']}/stock", json={"stock": 0}, headers=admin)
    assert r.status_code == 200
    assert r.json() == {**product, "stock": 0}
    assert (await client.get(f"/products/{product['id']}")).json()["stock"] == 0
    r = await client.put(f"/products/{product['id']}/stock", json={"stock": 7}, headers=admin)
    assert r.json() == {**product, "stock": 7}


@pytest.mark.parametrize(
    ("body", "stored"),
    [
        ({"name": "a", "price": 1, "stock": 0}, {"name": "a", "price": 1, "stock": 0}),
        (
            {"name": "x" * 200, "price": 100_000_000, "stock": 1_000_000_000},
            {"name": "x" * 200, "price": 100_000_000, "stock": 1_000_000_000},
        ),
        (
            {"name": "  padded  ", "price": 10, "stock": 1},
            {"name": "padded", "price": 10, "stock": 1},
        ),
        (
            {"name": " " + "y" * 200 + " ", "price": 10, "stock": 1},
            {"name": "y" * 200, "price": 10, "stock": 1},
        ),
        # JSON Schema's integers, as the OpenAPI document says: 10.0 is 10
        ({"name": "f", "price": 10.0, "stock": 0.0}, {"name": "f", "price": 10, "stock": 0}),
    ],
)
async def test_boundary_values_are_accepted(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    body: dict[str, Any],
    stored: dict[str, Any],
) -> None:
    r = await client.post("/products", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert {k: v for k, v in r.json().items() if k != "id"} == stored


BAD_NUMBERS = [0, -1, 1.5, 1e300, "100", True, None, 10**30, -(10**30), [1], {"n": 1}]


async def send_as_admin(
    client: httpx.AsyncClient, admin: dict[str, str], method: str, path: str, payload: object
) -> httpx.Response:
    """`payload` as JSON, or, given as bytes, sent as they are as a JSON body (malformed ones)."""
    if isinstance(payload, bytes):
        headers = {**admin, "content-type": "application/json"}
        return await client.request(method, path, content=payload, headers=headers)
    return await client.request(method, path, json=payload, headers=admin)


@pytest.mark.parametrize(
    "payload",
    [
        *[{"name": "n", "price": bad, "stock": 1} for bad in BAD_NUMBERS],
        {"name": "n", "price": 100_000_001, "stock": 1},
        *[{"name": "n", "price": 10, "stock": bad} for bad in BAD_NUMBERS if bad != 0],
        {"name": "n", "price": 10, "stock": 1_000_000_001},
        {"name": "", "price": 10, "stock": 1},
        {"name": "   ", "price": 10, "stock": 1},
        {"name": "x" * 201, "price": 10, "stock": 1},
        {"name": "nul\x00byte", "price": 10, "stock": 1},
        {"name": "line\nbreak", "price": 10, "stock": 1},
        {"name": 123, "price": 10, "stock": 1},
        {"name": None, "price": 10, "stock": 1},
        {"price": 10, "stock": 1},
        {"name": "n", "stock": 1},
        {"name": "n", "price": 10},
        {},
        {"name": "n", "price": 10, "stock": 1, "id": 5},
        b"{not json",
        b"",
        b"[]",
        b'"n"',
        b'{"name": "n", "price": 10, "stock": 1',
    ],
)
async def test_invalid_new_product_is_422_and_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], new_product: NewProduct, payload: object
) -> None:
    await new_product()
    before = await catalogue(client)
    r = await send_as_admin(client, admin, "POST", "/products", payload)
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert problem["errors"]
    assert await catalogue(client) == before


@pytest.mark.parametrize(
    "payload",
    [
        *[{"stock": bad} for bad in BAD_NUMBERS if bad != 0],
        {"stock": 1_000_000_001},
        {},
        {"stock": 1, "price": 5},
        b"{not json",
        b"",
        b"[3]",
    ],
)
async def test_invalid_stock_update_is_422_and_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], new_product: NewProduct, payload: object
) -> None:
    product = await new_product(stock=4)
    r = await send_as_admin(client, admin, "PUT", f"/products/{product['id']}/stock", payload)
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert problem["errors"]
    assert (await client.get(f"/products/{product['id']}")).json() == product


async def test_unknown_product_is_404_and_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    before = await catalogue(client)
    unknown = MAX_ID  # the largest valid id: well-formed, never issued here
    assert_problem(await client.get(f"/products/{unknown}"), 404, "PRODUCT_NOT_FOUND")
    r = await client.put(f"/products/{unknown}/stock", json={"stock": 3}, headers=admin)
    assert_problem(r, 404, "PRODUCT_NOT_FOUND")
    assert await catalogue(client) == before


@pytest.mark.parametrize("bad_id", ["0", "-1", str(2**63), str(10**30), "abc", "1.5", "1e3"])
async def test_out_of_range_product_id_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], bad_id: str
) -> None:
    before = await catalogue(client)
    for r in (
        await client.get(f"/products/{bad_id}"),
        await client.put(f"/products/{bad_id}/stock", json={"stock": 1}, headers=admin),
    ):
        assert_problem(r, 422, "VALIDATION_ERROR")
    assert await catalogue(client) == before


def _bad_tokens(secret: str) -> dict[str, dict[str, str]]:
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    exp = int(time.time()) + 3600
    return {
        "missing": {},
        "garbage": bearer("not-a-jwt"),
        "bearer without token": {"Authorization": "Bearer"},
        "basic scheme": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "wrong secret": bearer(mint("another-secret", "1", "admin")),
        "expired": bearer(mint(secret, "1", "admin", ttl_s=-60)),
        "no subject": bearer(jwt.encode({"role": "admin", "exp": exp}, secret, "HS256")),
        "unknown role": bearer(
            jwt.encode({"sub": "1", "role": "root", "exp": exp}, secret, "HS256")
        ),
        "alg none": bearer(jwt.encode({"sub": "1", "role": "admin", "exp": exp}, None, "none")),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "garbage",
        "bearer without token",
        "basic scheme",
        "wrong secret",
        "expired",
        "no subject",
        "unknown role",
        "alg none",
    ],
)
async def test_admin_endpoints_without_a_valid_token_are_401_and_change_nothing(
    client: httpx.AsyncClient, settings: Settings, new_product: NewProduct, case: str
) -> None:
    product = await new_product(stock=4)
    before = await catalogue(client)
    headers = _bad_tokens(settings.jwt_secret)[case]
    for r in (
        await client.post(
            "/products", json={"name": "n", "price": 10, "stock": 1}, headers=headers
        ),
        await client.put(f"/products/{product['id']}/stock", json={"stock": 9}, headers=headers),
    ):
        assert_problem(r, 401, "UNAUTHENTICATED")
    assert await catalogue(client) == before


async def test_admin_endpoints_with_a_user_token_are_403_and_change_nothing(
    client: httpx.AsyncClient, user_headers: dict[str, str], new_product: NewProduct
) -> None:
    product = await new_product(stock=4)
    before = await catalogue(client)
    for r in (
        await client.post(
            "/products", json={"name": "n", "price": 10, "stock": 1}, headers=user_headers
        ),
        await client.put(
            f"/products/{product['id']}/stock", json={"stock": 9}, headers=user_headers
        ),
    ):
        assert_problem(r, 403, "FORBIDDEN")
    assert await catalogue(client) == before


async def test_reads_need_no_token(client: httpx.AsyncClient, new_product: NewProduct) -> None:
    product = await new_product()
    assert (await client.get(f"/products/{product['id']}")).status_code == 200
    assert (await client.get("/products")).status_code == 200


async def test_an_anonymous_caller_gets_401_before_any_validation(
    client: httpx.AsyncClient,
) -> None:
    before = await catalogue(client)
    r = await client.post("/products", json={"name": "", "price": -1, "stock": 1.5})
    assert_problem(r, 401, "UNAUTHENTICATED")
    r = await client.put("/products/1/stock", json={"stock": "lots"})
    assert_problem(r, 401, "UNAUTHENTICATED")
    assert await catalogue(client) == before


async def test_service_endpoints_answer(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    assert "http_request_duration_seconds" in (await client.get("/metrics")).text
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths) >= {"/products", "/products/{product_id}", "/products/{product_id}/stock"}


async def test_far_more_reads_than_pooled_connections_all_succeed_and_open_no_more(
    client: httpx.AsyncClient, new_product: NewProduct, settings: Settings, db: asyncpg.Connection
) -> None:
    """Each request's session goes back to the pool once the response is sent: 300 reads at
    once through a pool of db_pool_size connections all succeed, and no connection is added."""
    product = await new_product()
    answers = await asyncio.gather(*(client.get(f"/products/{product['id']}") for _ in range(300)))
    assert {r.status_code for r in answers} == {200}
    connections = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = $1",
        settings.service_name,
    )
    assert connections <= settings.db_pool_size + settings.db_worker_pool_size
    idle_in_transaction = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND state = 'idle in transaction'"
    )
    assert idle_in_transaction == 0
