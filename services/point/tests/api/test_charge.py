import asyncio
import uuid

import asyncpg
import httpx
import pytest

from point.config import Settings
from point.main import create_app
from shopkit.testing import ActAsUser, asyncpg_dsn, running_server

PROBLEM = "application/problem+json"


async def test_charge_adds_to_balance_and_ledger(client: httpx.AsyncClient, user_id: int) -> None:
    assert (await client.get(f"/points/{user_id}")).json() == {"user_id": user_id, "balance": 0}
    r = await client.post(f"/points/{user_id}/charge", json={"amount": 5_000})
    assert r.status_code == 200
    assert r.json() == {"user_id": user_id, "balance": 5_000}
    await client.post(f"/points/{user_id}/charge", json={"amount": 1})
    history = (await client.get(f"/points/{user_id}/history")).json()["items"]
    assert [(i["type"], i["amount"], i["balance_after"]) for i in history] == [
        ("CHARGE", 1, 5_001),
        ("CHARGE", 5_000, 5_000),
    ]
    assert history[0]["order_id"] is None


@pytest.mark.parametrize(
    ("body", "content"),
    [
        ({"amount": 0}, None),
        ({"amount": -1}, None),
        ({"amount": 10_000_001}, None),
        ({"amount": 10**30}, None),
        ({"amount": 1.5}, None),
        ({"amount": 1e300}, None),
        ({"amount": 2.0**53}, None),
        ({"amount": "1000"}, None),
        ({"amount": True}, None),
        ({"amount": None}, None),
        ({}, None),
        ({"amount": 1000, "extra": 1}, None),
        (None, b"{not json"),
        (None, b"[1000]"),
    ],
)
async def test_invalid_charge_is_422_and_changes_nothing(
    client: httpx.AsyncClient, user_id: int, body: object, content: bytes | None
) -> None:
    await client.post(f"/points/{user_id}/charge", json={"amount": 100})
    if content is not None:
        r = await client.post(
            f"/points/{user_id}/charge",
            content=content,
            headers={"content-type": "application/json"},
        )
    else:
        r = await client.post(f"/points/{user_id}/charge", json=body)
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["code"] == "VALIDATION_ERROR"
    assert problem["status"] == 422
    assert problem["errors"]
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 100
    assert len((await client.get(f"/points/{user_id}/history")).json()["items"]) == 1


async def test_an_amount_written_as_a_whole_float_is_that_integer(
    client: httpx.AsyncClient, user_id: int
) -> None:
    """JSON Schema's integer, as the OpenAPI document says: 100.0 is 100."""
    r = await client.post(f"/points/{user_id}/charge", json={"amount": 100.0})
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": user_id, "balance": 100}


@pytest.mark.parametrize("bad_id", ["0", "-1", str(2**63), "abc", "1.5"])
async def test_out_of_range_user_id_is_422(client: httpx.AsyncClient, bad_id: str) -> None:
    for r in (
        await client.get(f"/points/{bad_id}"),
        await client.get(f"/points/{bad_id}/history"),
        await client.post(f"/points/{bad_id}/charge", json={"amount": 1}),
    ):
        assert r.status_code == 422
        assert r.json()["code"] == "VALIDATION_ERROR"


async def test_largest_user_id_is_accepted(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/points/{2**63 - 1}")
    assert r.status_code == 200


async def test_charge_past_the_cap_is_409_and_changes_nothing(
    client: httpx.AsyncClient, user_id: int
) -> None:
    for _ in range(10):
        assert (
            await client.post(f"/points/{user_id}/charge", json={"amount": 10_000_000})
        ).status_code == 200
    r = await client.post(f"/points/{user_id}/charge", json={"amount": 1})
    assert r.status_code == 409
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "BALANCE_LIMIT_EXCEEDED"
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 100_000_000
    assert len((await client.get(f"/points/{user_id}/history")).json()["items"]) == 10


async def test_200_concurrent_charges_are_all_applied(
    client: httpx.AsyncClient, user_id: int
) -> None:
    responses = await asyncio.gather(
        *(client.post(f"/points/{user_id}/charge", json={"amount": 1_000}) for _ in range(200))
    )
    assert {r.status_code for r in responses} == {200}
    assert sorted(r.json()["balance"] for r in responses) == list(range(1_000, 200_001, 1_000))
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 200_000
    history = (await client.get(f"/points/{user_id}/history")).json()["items"]
    assert len(history) == 200
    assert {h["type"] for h in history} == {"CHARGE"}


async def test_same_idempotency_key_50_times_concurrently_charges_once(
    client: httpx.AsyncClient, user_id: int
) -> None:
    key = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(
            client.post(
                f"/points/{user_id}/charge", json={"amount": 700}, headers={"Idempotency-Key": key}
            )
            for _ in range(50)
        )
    )
    ok = [r for r in responses if r.status_code == 200]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(ok) + len(in_use) == 50
    assert all(r.json()["code"] == "IDEMPOTENCY_KEY_IN_USE" for r in in_use)
    assert all(r.json() == {"user_id": user_id, "balance": 700} for r in ok)
    assert sum(1 for r in ok if r.headers.get("Idempotent-Replayed") != "true") <= 1
    retry = await client.post(
        f"/points/{user_id}/charge", json={"amount": 700}, headers={"Idempotency-Key": key}
    )
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == {"user_id": user_id, "balance": 700}
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 700
    assert len((await client.get(f"/points/{user_id}/history")).json()["items"]) == 1


async def test_same_idempotency_key_with_another_body_is_422(
    client: httpx.AsyncClient, user_id: int
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    assert (
        await client.post(f"/points/{user_id}/charge", json={"amount": 10}, headers=headers)
    ).status_code == 200
    r = await client.post(f"/points/{user_id}/charge", json={"amount": 20}, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 10


async def test_idempotency_keys_are_per_user(client: httpx.AsyncClient, user_id: int) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    await client.post(f"/points/{user_id}/charge", json={"amount": 10}, headers=headers)
    await client.post(f"/points/{user_id + 1}/charge", json={"amount": 10}, headers=headers)
    assert (await client.get(f"/points/{user_id + 1}")).json()["balance"] == 10


async def test_a_statement_timeout_is_a_503_to_retry_and_changes_nothing(
    settings: Settings, client: httpx.AsyncClient, user_id: int
) -> None:
    """A dependency failing for a moment (here: the balance row locked past the statement
    timeout) is 503 with Retry-After, not a 500: the client may retry."""
    await client.post(f"/points/{user_id}/charge", json={"amount": 100})
    impatient = settings.model_copy(
        update={"db_statement_timeout_ms": 300, "run_workers": False, "run_migrations": False}
    )
    holder = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        async with holder.transaction():
            await holder.execute("SELECT * FROM balances WHERE user_id = $1 FOR UPDATE", user_id)
            async with (
                running_server(create_app(impatient)) as url,
                httpx.AsyncClient(base_url=url, auth=ActAsUser(settings.jwt_secret)) as other,
            ):
                r = await other.post(f"/points/{user_id}/charge", json={"amount": 1})
    finally:
        await holder.close()
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert r.json()["code"] == "SERVICE_UNAVAILABLE"
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 100
