"""The order HTTP API: placing, reading, validation, Idempotency-Key and `Prefer: wait`."""

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from shopkit.testing import assert_problem

ORDER_KEYS = {
    "order_id",
    "user_id",
    "status",
    "failure_reason",
    "lines",
    "user_coupon_id",
    "subtotal",
    "discount",
    "total",
    "created_at",
    "paid_at",
}
LINE_KEYS = {"product_id", "quantity", "unit_price", "status", "excluded_reason"}


def body(uid: int, **changes: Any) -> dict[str, Any]:
    return {
        "user_id": uid,
        "items": [{"product_id": 10, "quantity": 2}, {"product_id": 11, "quantity": 1}],
        "user_coupon_id": None,
        **changes,
    }


async def test_a_placed_order_is_pending_with_unknown_prices(
    client: httpx.AsyncClient, user_id: int
) -> None:
    r = await client.post("/orders", json=body(user_id, user_coupon_id=5))
    assert r.status_code == 202
    order = r.json()
    assert set(order) == ORDER_KEYS
    assert order["user_id"] == user_id
    assert order["status"] == "PENDING"
    assert order["failure_reason"] is None
    assert order["user_coupon_id"] == 5
    assert order["subtotal"] is order["discount"] is order["total"] is order["paid_at"] is None
    assert [set(line) for line in order["lines"]] == [LINE_KEYS, LINE_KEYS]
    assert order["lines"] == [
        {
            "product_id": 10,
            "quantity": 2,
            "unit_price": None,
            "status": "ORDERED",
            "excluded_reason": None,
        },
        {
            "product_id": 11,
            "quantity": 1,
            "unit_price": None,
            "status": "ORDERED",
            "excluded_reason": None,
        },
    ]
    assert uuid.UUID(order["order_id"])
    assert order["created_at"].endswith(("Z", "+00:00"))
    assert r.headers["location"] == f"/orders/{order['order_id']}"
    assert "idempotent-replayed" not in r.headers
    assert (await client.get(f"/orders/{order['order_id']}")).json() == order


async def test_placing_an_order_emits_order_created_through_the_outbox(
    client: httpx.AsyncClient, db: asyncpg.Connection, user_id: int
) -> None:
    order = (await client.post("/orders", json=body(user_id, user_coupon_id=3))).json()
    row = await db.fetchrow(
        "SELECT topic, event_type, envelope::text FROM outbox WHERE key = $1", order["order_id"]
    )
    assert (row["topic"], row["event_type"]) == ("shop.order.events", "OrderCreated")
    assert '"user_coupon_id": 3' in row["envelope"]


async def test_a_users_orders_are_listed_newest_first(
    client: httpx.AsyncClient, user_id: int
) -> None:
    placed = [(await client.post("/orders", json=body(user_id))).json() for _ in range(3)]
    await client.post("/orders", json=body(user_id + 1))
    r = await client.get(f"/users/{user_id}/orders")
    assert r.status_code == 200
    assert [o["order_id"] for o in r.json()["items"]] == [o["order_id"] for o in reversed(placed)]
    limited = (await client.get(f"/users/{user_id}/orders", params={"limit": 2})).json()
    assert [o["order_id"] for o in limited["items"]] == [o["order_id"] for o in placed[:0:-1]]
    assert (await client.get(f"/users/{user_id + 2}/orders")).json() == {"items": []}


async def test_the_largest_ids_are_accepted(client: httpx.AsyncClient) -> None:
    big = 2**63 - 1
    r = await client.post(
        "/orders",
        json={"user_id": big, "items": [{"product_id": big, "quantity": 1}], "user_coupon_id": big},
    )
    assert r.status_code == 202
    assert (await client.get(f"/users/{big}/orders")).status_code == 200


def _items(n: int) -> list[dict[str, int]]:
    return [{"product_id": i, "quantity": 1} for i in range(1, n + 1)]


INVALID_BODIES: dict[str, Any] = {
    "no-user": lambda u: {k: v for k, v in body(u).items() if k != "user_id"},
    "user-zero": lambda u: body(u, user_id=0),
    "user-negative": lambda u: body(u, user_id=-1),
    "user-too-big": lambda u: body(u, user_id=2**63),
    "user-as-string": lambda u: body(u, user_id=str(u)),
    "user-as-fraction": lambda u: body(u, user_id=1.5),
    "user-as-bool": lambda u: body(u, user_id=True),
    "user-null": lambda u: body(u, user_id=None),
    "no-items": lambda u: {k: v for k, v in body(u).items() if k != "items"},
    "items-empty": lambda u: body(u, items=[]),
    "items-51": lambda u: body(u, items=_items(51)),
    "items-not-a-list": lambda u: body(u, items={"product_id": 1, "quantity": 1}),
    "items-null": lambda u: body(u, items=None),
    "duplicate-products": lambda u: body(
        u, items=[{"product_id": 1, "quantity": 1}, {"product_id": 1, "quantity": 2}]
    ),
    "product-zero": lambda u: body(u, items=[{"product_id": 0, "quantity": 1}]),
    "product-too-big": lambda u: body(u, items=[{"product_id": 2**63, "quantity": 1}]),
    "product-as-string": lambda u: body(u, items=[{"product_id": "1", "quantity": 1}]),
    "product-missing": lambda u: body(u, items=[{"quantity": 1}]),
    "quantity-zero": lambda u: body(u, items=[{"product_id": 1, "quantity": 0}]),
    "quantity-negative": lambda u: body(u, items=[{"product_id": 1, "quantity": -3}]),
    "quantity-too-big": lambda u: body(u, items=[{"product_id": 1, "quantity": 1_001}]),
    "quantity-huge": lambda u: body(u, items=[{"product_id": 1, "quantity": 10**30}]),
    "quantity-fraction": lambda u: body(u, items=[{"product_id": 1, "quantity": 2.5}]),
    "quantity-string": lambda u: body(u, items=[{"product_id": 1, "quantity": "2"}]),
    "quantity-bool": lambda u: body(u, items=[{"product_id": 1, "quantity": True}]),
    "quantity-missing": lambda u: body(u, items=[{"product_id": 1}]),
    "item-extra-field": lambda u: body(
        u, items=[{"product_id": 1, "quantity": 1, "unit_price": 1}]
    ),
    "coupon-zero": lambda u: body(u, user_coupon_id=0),
    "coupon-too-big": lambda u: body(u, user_coupon_id=2**63),
    "coupon-as-string": lambda u: body(u, user_coupon_id="5"),
    "extra-field": lambda u: body(u, status="PAID"),
    "not-an-object": lambda u: [body(u)],
}


async def _orders_in_db(db: asyncpg.Connection) -> tuple[int, int]:
    orders = await db.fetchval("SELECT count(*) FROM orders")
    events = await db.fetchval("SELECT count(*) FROM outbox")
    return orders, events


@pytest.mark.parametrize("case", INVALID_BODIES)
async def test_an_invalid_order_is_422_and_creates_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, user_id: int, case: str
) -> None:
    before = await _orders_in_db(db)
    r = await client.post("/orders", json=INVALID_BODIES[case](user_id))
    problem = assert_problem(r, 422, "VALIDATION_ERROR")
    assert problem["status"] == 422
    assert problem["errors"]
    assert await _orders_in_db(db) == before
    assert (await client.get(f"/users/{user_id}/orders")).json() == {"items": []}


@pytest.mark.parametrize("content", [b"{not json", b"", b"null", b'"order"'])
async def test_a_body_that_is_not_an_order_is_422_and_creates_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, content: bytes
) -> None:
    before = await _orders_in_db(db)
    r = await client.post("/orders", content=content, headers={"content-type": "application/json"})
    assert_problem(r, 422, "VALIDATION_ERROR")
    assert await _orders_in_db(db) == before


async def test_fifty_distinct_lines_are_accepted(client: httpx.AsyncClient, user_id: int) -> None:
    r = await client.post("/orders", json=body(user_id, items=_items(50)))
    assert r.status_code == 202
    assert len(r.json()["lines"]) == 50


async def test_an_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/orders/{uuid.uuid4()}")
    assert_problem(r, 404, "ORDER_NOT_FOUND")


@pytest.mark.parametrize("bad", ["abc", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_a_malformed_order_id_is_422(client: httpx.AsyncClient, bad: str) -> None:
    r = await client.get(f"/orders/{bad}")
    assert r.status_code == 422
    assert r.json()["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("bad", ["0", "-1", str(2**63), "abc", "1.5"])
async def test_an_out_of_range_user_id_is_422(client: httpx.AsyncClient, bad: str) -> None:
    r = await client.get(f"/users/{bad}/orders")
    assert r.status_code == 422
    assert r.json()["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("limit", ["0", "1001", "x"])
async def test_an_invalid_limit_is_422(client: httpx.AsyncClient, user_id: int, limit: str) -> None:
    r = await client.get(f"/users/{user_id}/orders", params={"limit": limit})
    assert r.status_code == 422


async def test_the_same_idempotency_key_20_times_concurrently_places_one_order(
    client: httpx.AsyncClient, user_id: int
) -> None:
    key = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(
            client.post("/orders", json=body(user_id), headers={"Idempotency-Key": key})
            for _ in range(20)
        )
    )
    placed = [r for r in responses if r.status_code == 202]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(placed) + len(in_use) == 20
    assert placed
    assert all(r.json()["code"] == "IDEMPOTENCY_KEY_IN_USE" for r in in_use)
    assert len({r.json()["order_id"] for r in placed}) == 1
    assert sum(1 for r in placed if r.headers.get("Idempotent-Replayed") != "true") <= 1

    retry = await client.post("/orders", json=body(user_id), headers={"Idempotency-Key": key})
    assert retry.status_code == 202
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["order_id"] == placed[0].json()["order_id"]
    orders = (await client.get(f"/users/{user_id}/orders")).json()["items"]
    assert [o["order_id"] for o in orders] == [placed[0].json()["order_id"]]


async def test_the_same_idempotency_key_with_another_order_is_422(
    client: httpx.AsyncClient, user_id: int
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    assert (await client.post("/orders", json=body(user_id), headers=headers)).status_code == 202
    other = body(user_id, items=[{"product_id": 10, "quantity": 3}])
    r = await client.post("/orders", json=other, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len((await client.get(f"/users/{user_id}/orders")).json()["items"]) == 1


async def test_idempotency_keys_are_per_user(client: httpx.AsyncClient, user_id: int) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    first = await client.post("/orders", json=body(user_id), headers=headers)
    second = await client.post("/orders", json=body(user_id + 1), headers=headers)
    assert second.status_code == 202
    assert "idempotent-replayed" not in second.headers
    assert first.json()["order_id"] != second.json()["order_id"]


async def test_an_overlong_idempotency_key_is_422(client: httpx.AsyncClient, user_id: int) -> None:
    r = await client.post("/orders", json=body(user_id), headers={"Idempotency-Key": "k" * 256})
    assert r.status_code == 422
    assert r.json()["code"] == "VALIDATION_ERROR"
    assert (await client.get(f"/users/{user_id}/orders")).json() == {"items": []}


async def test_prefer_wait_answers_202_with_the_pending_order_when_the_saga_does_not_end(
    client: httpx.AsyncClient, user_id: int
) -> None:
    r = await client.post("/orders", json=body(user_id), headers={"Prefer": "wait=1"})
    assert r.status_code == 202
    assert r.json()["status"] == "PENDING"
    assert r.headers["Preference-Applied"] == "wait=1"


@pytest.mark.parametrize("prefer", ["wait=abc", "respond-async", "wait=-1"])
async def test_an_invalid_or_other_preference_is_ignored(
    client: httpx.AsyncClient, user_id: int, prefer: str
) -> None:
    r = await client.post("/orders", json=body(user_id), headers={"Prefer": prefer})
    assert r.status_code == 202
    assert "preference-applied" not in r.headers


async def test_the_openapi_document_describes_both_answers_and_the_nulls(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/openapi.json")).json()
    post = doc["paths"]["/orders"]["post"]
    assert {"201", "202", "422"} <= set(post["responses"])
    assert {p["name"] for p in post["parameters"]} >= {"Idempotency-Key", "prefer"}
    total = doc["components"]["schemas"]["OrderView"]["properties"]["total"]
    assert "null until" in total["description"]
