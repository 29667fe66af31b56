"""A user's points are that user's: another user's token may neither read nor charge them, a
request without a token is 401, and nothing changes on a refused request. An admin may act for
anyone (support, refunds by hand)."""

import httpx

from point.config import Settings
from shopkit.http.auth import mint
from shopkit.testing import bearer

PROBLEM = "application/problem+json"


async def test_another_users_token_can_neither_read_nor_charge(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    owner, other = user_id, user_id + 1
    await client.post(f"/points/{owner}/charge", json={"amount": 5_000})
    as_other = bearer(settings.jwt_secret, other)

    for r in (
        await client.get(f"/points/{owner}", headers=as_other),
        await client.get(f"/points/{owner}/history", headers=as_other),
        await client.post(f"/points/{owner}/charge", json={"amount": 1}, headers=as_other),
        await client.post(
            f"/points/{owner}/charge",
            json={"amount": 1},
            headers={**as_other, "Idempotency-Key": "k-1"},
        ),
    ):
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "FORBIDDEN"

    assert (await client.get(f"/points/{owner}")).json()["balance"] == 5_000
    assert len((await client.get(f"/points/{owner}/history")).json()["items"]) == 1


async def test_without_a_valid_token_it_is_401_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    bad_tokens = {
        "none": {},
        "expired": bearer(settings.jwt_secret, user_id, ttl_s=-60),
        "wrong key": {"Authorization": f"Bearer {mint('k' * 40, str(user_id), 'user')}"},
        "not bearer": {"Authorization": f"Basic {user_id}"},
        "garbage": {"Authorization": "Bearer x.y.z"},
    }
    # ActAsUser signs only requests without an Authorization header: send "none" raw.
    async with httpx.AsyncClient(base_url=str(client.base_url)) as anonymous:
        for name, headers in bad_tokens.items():
            http = anonymous if name == "none" else client
            charge = await http.post(
                f"/points/{user_id}/charge", json={"amount": 1_000}, headers=headers
            )
            read = await http.get(f"/points/{user_id}", headers=headers)
            for r in (charge, read):
                assert r.status_code == 401, (name, r.text)
                assert r.headers["content-type"] == PROBLEM
                assert r.json()["code"] == "UNAUTHENTICATED"
                assert r.headers["www-authenticate"].startswith("Bearer")
    assert (await client.get(f"/points/{user_id}")).json()["balance"] == 0


async def test_an_admin_may_act_for_any_user(
    client: httpx.AsyncClient, settings: Settings, user_id: int
) -> None:
    admin = bearer(settings.jwt_secret, 0, "admin")
    r = await client.post(f"/points/{user_id}/charge", json={"amount": 700}, headers=admin)
    assert r.status_code == 200, r.text
    assert (await client.get(f"/points/{user_id}", headers=admin)).json()["balance"] == 700
