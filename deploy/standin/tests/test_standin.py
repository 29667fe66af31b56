"""The stand-in's side of the data-platform contract, over its real HTTP API."""

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from dataplatform_standin import create_app, sign

SECRET = "test-platform-secret"
ORDER = {"order_id": "5f0e6a0c-4c1e-4a59-9d3c-1f6f2b7f2f1e", "total": 12_000}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(SECRET))
    async with httpx.AsyncClient(transport=transport, base_url="http://standin") as c:
        yield c


async def deliver(
    client: httpx.AsyncClient, key: str, order: dict[str, object] = ORDER, secret: str = SECRET
) -> httpx.Response:
    body = json.dumps(order).encode()
    headers = {
        "Idempotency-Key": key,
        "X-Signature": sign(body, secret),
        "Content-Type": "application/json",
    }
    return await client.post("/orders", content=body, headers=headers)


async def test_a_signed_delivery_is_recorded(client: httpx.AsyncClient) -> None:
    r = await deliver(client, "k1")
    assert r.status_code == 201
    items = (await client.get("/orders")).json()["items"]
    assert [(i["idempotency_key"], i["order"], i["replays"]) for i in items] == [("k1", ORDER, 0)]


async def test_a_replayed_key_answers_200_and_records_nothing_new(
    client: httpx.AsyncClient,
) -> None:
    assert (await deliver(client, "k1")).status_code == 201
    again = await deliver(client, "k1", {**ORDER, "total": 1})
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    items = (await client.get("/orders")).json()["items"]
    assert len(items) == 1
    assert items[0]["order"] == ORDER
    assert items[0]["replays"] == 1


async def test_a_body_signed_with_another_secret_is_rejected(client: httpx.AsyncClient) -> None:
    r = await deliver(client, "k1", secret="not-the-secret")
    assert r.status_code == 401
    assert (await client.get("/orders")).json()["items"] == []
    assert (await client.get("/control/stats")).json()["rejected_signatures"] == 1


async def test_a_signature_of_other_bytes_is_rejected(client: httpx.AsyncClient) -> None:
    body = json.dumps(ORDER).encode()
    headers = {"Idempotency-Key": "k1", "X-Signature": sign(body + b" ", SECRET)}
    assert (await client.post("/orders", content=body, headers=headers)).status_code == 401
    del headers["X-Signature"]
    assert (await client.post("/orders", content=body, headers=headers)).status_code == 401


async def test_a_delivery_without_idempotency_key_is_refused(client: httpx.AsyncClient) -> None:
    body = json.dumps(ORDER).encode()
    r = await client.post("/orders", content=body, headers={"X-Signature": sign(body, SECRET)})
    assert r.status_code == 400


async def test_fail_next_fails_that_many_requests_then_recovers(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/control/fail-next", json={"count": 2, "status": 500})
    assert r.status_code == 200
    assert [(await deliver(client, "k1")).status_code for _ in range(3)] == [500, 500, 201]
    stats = (await client.get("/control/stats")).json()
    assert (stats["requests"], stats["injected_failures"], stats["accepted"]) == (3, 2, 1)


async def test_slow_delays_answers(client: httpx.AsyncClient) -> None:
    await client.post("/control/slow", json={"seconds": 5})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(deliver(client, "k0"), timeout=0.2)
    await client.post("/control/slow", json={"seconds": 0})
    assert (await deliver(client, "k1")).status_code == 201


async def test_reset_forgets_everything(client: httpx.AsyncClient) -> None:
    await deliver(client, "k1")
    await client.post("/control/fail-next", json={"count": 5})
    await client.post("/control/reset")
    assert (await client.get("/orders")).json()["items"] == []
    assert (await deliver(client, "k2")).status_code == 201


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/control/fail-next", {"count": -1}),
        ("/control/fail-next", {"count": 1, "status": 200}),
        ("/control/slow", {"seconds": -1}),
        ("/control/slow", {"secs": 1}),
    ],
)
async def test_bad_control_requests_are_422(
    client: httpx.AsyncClient, path: str, body: dict[str, int]
) -> None:
    assert (await client.post(path, json=body)).status_code == 422


async def test_concurrent_replays_of_one_key_record_it_once(client: httpx.AsyncClient) -> None:
    statuses = sorted(
        r.status_code for r in await asyncio.gather(*(deliver(client, "k1") for _ in range(20)))
    )
    assert statuses == [200] * 19 + [201]
    assert len((await client.get("/orders")).json()["items"]) == 1
