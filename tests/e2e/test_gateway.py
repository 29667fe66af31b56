"""The whole API through the gateway: our nginx, rendered from deploy/gateway's template exactly as
`deploy/local/gateway.sh` renders it, in front of the services the e2e harness started. Every
request here goes to the gateway's port, never to a service's own."""

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shopkit.http.auth import mint
from shopkit.testing import PROBLEM, ActAsUser, assert_problem, bearer, free_port
from shopkit.testing.processes import System

from .gateway import TEST_JWT_SECRET, Gateway, GatewayShop, upstreams

pytestmark = pytest.mark.e2e

SERVICES = ("point", "product", "coupon", "order", "ranking")


@pytest.fixture(scope="module")
async def gateway(
    system: System, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    # A service the harness does not run (ranking, until it joins) points at a closed port.
    routes = upstreams(system, SERVICES, absent_port=free_port())
    async with Gateway(
        tmp_path_factory.mktemp("gateway"),
        routes,
        issue_rate="2r/s",
        issue_burst=5,
        jwt_secret=system.secrets.jwt,
    ) as gw:
        yield gw


@pytest.fixture
async def shop_via_gateway(system: System, gateway: Gateway) -> AsyncIterator[GatewayShop]:
    async with httpx.AsyncClient(timeout=60, auth=ActAsUser(system.secrets.jwt)) as http:
        shop = GatewayShop(http, system, admin_token=mint(system.secrets.jwt, "0", "admin"))
        shop.gateway_url = gateway.url
        yield shop


async def test_an_order_is_paid_end_to_end_through_the_gateway(
    shop_via_gateway: GatewayShop,
) -> None:
    shop = shop_via_gateway
    user = shop.new_user()
    latte = await shop.create_product("latte", 5_000, 10)
    bagel = await shop.create_product("bagel", 3_500, 4)
    coupon = await shop.create_coupon(
        discount_type="FIXED", discount_value=1_500, min_order_amount=5_000
    )
    assert (await shop.http.get(shop.url("coupon", f"/coupons/{coupon['id']}"))).json()[
        "remaining_quantity"
    ] == coupon["total_quantity"]
    await shop.charge(user, 30_000)
    user_coupon = await shop.issue(coupon["id"], user)

    r = await shop.place_order(
        user, [(latte["id"], 2), (bagel["id"], 1)], user_coupon, wait_s=30, idempotency_key="gw-1"
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["status"] == "PAID", order
    assert order["total"] == 2 * 5_000 + 3_500 - 1_500

    # The same Idempotency-Key through the gateway is the same order, never a second one.
    again = await shop.place_order(
        user, [(latte["id"], 2), (bagel["id"], 1)], user_coupon, idempotency_key="gw-1"
    )
    assert again.json()["order_id"] == order["order_id"]

    assert (await shop.order(order["order_id"]))["status"] == "PAID"
    mine = await shop.http.get(shop.url("order", f"/users/{user}/orders"))
    assert [o["order_id"] for o in mine.json()["items"]] == [order["order_id"]]
    assert await shop.balance(user) == 30_000 - order["total"]
    assert [h["type"] for h in await shop.history(user)] == ["PAYMENT", "CHARGE"]
    assert (await shop.product(latte["id"]))["stock"] == 8
    listed = await shop.http.get(shop.url("product", "/products"))
    assert latte["id"] in {p["id"] for p in listed.json()["items"]}
    assert (await shop.user_coupon(user, user_coupon))["status"] == "USED"


async def test_the_request_id_is_echoed_or_made_by_the_gateway(
    shop_via_gateway: GatewayShop,
) -> None:
    http, base = shop_via_gateway.http, shop_via_gateway.gateway_url
    given = await http.get(f"{base}/products", headers={"X-Request-ID": "req-42.abc"})
    assert given.status_code == 200
    assert given.headers.get_list("x-request-id") == ["req-42.abc"]

    made = await http.get(f"{base}/points/1")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])

    unsafe = await http.get(f"{base}/points/1", headers={"X-Request-ID": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])


async def test_service_errors_pass_through_the_gateway_unchanged(
    shop_via_gateway: GatewayShop,
) -> None:
    http, base = shop_via_gateway.http, shop_via_gateway.gateway_url
    missing = await http.get(f"{base}/products/{2**62}")
    assert_problem(missing, 404, "PRODUCT_NOT_FOUND")

    bad = await http.post(f"{base}/points/1/charge", json={"amount": 0})
    assert bad.status_code == 422
    assert bad.json()["code"] == "VALIDATION_ERROR"

    unauthenticated = await http.post(
        f"{base}/products", json={"name": "x", "price": 1, "stock": 1}
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["code"] == "UNAUTHENTICATED"


async def test_the_gateway_answers_problem_json_for_what_it_refuses(
    shop_via_gateway: GatewayShop,
) -> None:
    http, base = shop_via_gateway.http, shop_via_gateway.gateway_url
    unknown = await http.get(f"{base}/admin/secrets")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM
    assert unknown.json() == {
        "type": "https://errors.shop.local/not-found",
        "title": "Not found",
        "status": 404,
        "detail": "No route for this path at the gateway.",
        "code": "NOT_FOUND",
    }

    too_large = await http.post(
        f"{base}/orders",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert_problem(too_large, 413, "PAYLOAD_TOO_LARGE")


RATE_LIMITED = {
    "type": "https://errors.shop.local/rate-limited",
    "title": "Too many requests",
    "status": 429,
    "detail": "Too many requests from this client, or too many in flight from it or on this route; retry in a moment.",
    "code": "RATE_LIMITED",
}


async def test_one_user_hammering_the_issue_path_is_rate_limited(
    shop_via_gateway: GatewayShop,
) -> None:
    shop = shop_via_gateway
    coupon = await shop.create_coupon(total_quantity=1_000)
    path = shop.url("coupon", f"/coupons/{coupon['id']}/issue")
    user = shop.new_user()
    answers = await asyncio.gather(
        *(shop.http.post(path, json={"user_id": user}) for _ in range(40))
    )

    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {201, 409, 429}, statuses
    assert statuses.count(201) == 1, statuses
    limited = [a for a in answers if a.status_code == 429]
    assert limited, "40 simultaneous issue requests from one user, none was limited"
    for answer in limited:
        assert answer.headers["content-type"] == PROBLEM
        assert answer.headers["retry-after"] == "1"
        assert answer.json() == RATE_LIMITED
    # Other paths of the same user are not limited.
    assert (await shop.http.get(shop.url("coupon", f"/coupons/{coupon['id']}"))).status_code == 200


async def test_400_users_behind_one_address_are_all_served_in_a_rush(
    shop_via_gateway: GatewayShop,
) -> None:
    """One carrier NAT address, 400 users with their own tokens, all at once: the limit is per
    user, so each is served (issued, or sold out), none turned away."""
    shop = shop_via_gateway
    coupon = await shop.create_coupon(total_quantity=300)
    path = shop.url("coupon", f"/coupons/{coupon['id']}/issue")
    users = [shop.new_user() for _ in range(400)]
    answers = await asyncio.gather(*(shop.http.post(path, json={"user_id": u}) for u in users))

    statuses = [a.status_code for a in answers]
    assert 429 not in statuses
    assert statuses.count(201) == 300, sorted(set(statuses))
    assert {a.json()["code"] for a in answers if a.status_code != 201} == {"COUPON_SOLD_OUT"}
    issued = (await shop.http.get(shop.url("coupon", f"/coupons/{coupon['id']}"))).json()
    assert issued["issued_quantity"] == 300


async def test_made_up_tokens_buy_no_quota_and_count_against_their_address(
    shop_via_gateway: GatewayShop,
) -> None:
    """1,500 issue requests from one address, each with another token the gateway cannot vouch
    for (junk, wrongly signed, a real header and claims with a made-up signature): they share
    the address's bucket (2r/s, burst 5), so all but a handful are 429 at the gateway and only
    those few reach the service (401 there)."""
    shop = shop_via_gateway
    coupon = await shop.create_coupon(total_quantity=10)
    path = shop.url("coupon", f"/coupons/{coupon['id']}/issue")
    user = shop.new_user()
    real = mint(shop.system.secrets.jwt, str(user), "user")
    head_and_claims = real.rsplit(".", 1)[0]

    def made_up(i: int) -> str:
        if i % 3 == 0:
            return base64.urlsafe_b64encode(f"junk-{i}-{time.time_ns()}".encode()).decode()
        if i % 3 == 1:
            return mint(f"not-our-secret-{i}".ljust(40, "z"), str(user), "user")
        return f"{head_and_claims}.{_b64({'forged': i})[:43].ljust(43, 'A')}"

    requests, senders = 1_500, 50
    answers: list[httpx.Response] = []
    # No ActAsUser: the tokens given only. Each sender has a connection of its own (a pool with
    # 1,500 waiters is slow in httpx itself).
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=senders)) as http:

        async def sender(first: int) -> None:
            for i in range(first, requests, senders):
                headers = {"Authorization": f"Bearer {made_up(i)}"}
                answers.append(await http.post(path, json={"user_id": user}, headers=headers))

        started = time.monotonic()
        await asyncio.gather(*(sender(first) for first in range(senders)))
        elapsed = time.monotonic() - started
    assert len(answers) == requests

    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 429}, sorted(set(statuses))
    # What the address's bucket lets through while the requests were being sent.
    assert statuses.count(401) <= 5 + 2 * elapsed + 1, (statuses.count(401), elapsed)
    for answer in answers:
        if answer.status_code == 429:
            assert answer.headers["content-type"] == PROBLEM
            assert answer.headers["retry-after"] == "1"
            assert answer.json() == RATE_LIMITED
        else:
            assert_problem(answer, 401, "UNAUTHENTICATED")
    issued = (await shop.http.get(shop.url("coupon", f"/coupons/{coupon['id']}"))).json()
    assert issued["issued_quantity"] == 0


async def test_users_are_confined_to_their_own_data_through_the_gateway(
    shop_via_gateway: GatewayShop,
) -> None:
    shop = shop_via_gateway
    secret = shop.system.secrets.jwt
    alice, bob = shop.new_user(), shop.new_user()
    as_alice = bearer(secret, alice)
    product = await shop.create_product("tea", 4_000, 10)
    coupon = await shop.create_coupon(discount_value=500, total_quantity=10)
    await shop.charge(bob, 20_000)
    await shop.charge(alice, 20_000)
    bobs_coupon = await shop.issue(coupon["id"], bob)
    bobs_order = await shop.order_and_wait(bob, [(product["id"], 1)])
    assert bobs_order["status"] == "PAID"
    base = shop.gateway_url

    refused = {
        "read Bob's balance": await shop.http.get(f"{base}/points/{bob}", headers=as_alice),
        "read Bob's ledger": await shop.http.get(f"{base}/points/{bob}/history", headers=as_alice),
        "charge Bob": await shop.http.post(
            f"{base}/points/{bob}/charge", json={"amount": 1_000}, headers=as_alice
        ),
        "list Bob's coupons": await shop.http.get(f"{base}/users/{bob}/coupons", headers=as_alice),
        "issue for Bob": await shop.http.post(
            f"{base}/coupons/{coupon['id']}/issue", json={"user_id": bob}, headers=as_alice
        ),
        "list Bob's orders": await shop.http.get(f"{base}/users/{bob}/orders", headers=as_alice),
        "read Bob's order": await shop.http.get(
            f"{base}/orders/{bobs_order['order_id']}", headers=as_alice
        ),
        "order as Bob": await shop.http.post(
            f"{base}/orders",
            json={"user_id": bob, "items": [{"product_id": product["id"], "quantity": 1}]},
            headers=as_alice,
        ),
    }
    for what, r in refused.items():
        assert (r.status_code, r.json()["code"]) == (403, "FORBIDDEN"), what
        assert r.headers["content-type"] == PROBLEM, what

    # Ordering with Bob's coupon takes nothing from anyone.
    stolen = await shop.order_and_wait(alice, [(product["id"], 1)], bobs_coupon)
    assert (stolen["status"], stolen["failure_reason"]) == ("FAILED", "COUPON_INVALID")
    assert (await shop.user_coupon(bob, bobs_coupon))["status"] == "AVAILABLE"
    assert await shop.balance(alice) == 20_000
    assert await shop.balance(bob) == 20_000 - bobs_order["total"]
    assert [
        i["user_id"] for i in (await shop.http.get(f"{base}/users/{bob}/orders")).json()["items"]
    ] == [bob]

    # Admin endpoints refuse a user's token.
    for method, path, body in (
        ("POST", "/products", {"name": "x", "price": 1, "stock": 1}),
        ("PUT", f"/products/{product['id']}/stock", {"stock": 0}),
        (
            "POST",
            "/coupons",
            {
                "name": "x",
                "discount_type": "FIXED",
                "discount_value": 1,
                "total_quantity": 1,
                "valid_days": 1,
                "min_order_amount": 0,
            },
        ),
    ):
        r = await shop.http.request(method, f"{base}{path}", json=body, headers=as_alice)
        assert (r.status_code, r.json()["code"]) == (403, "FORBIDDEN"), path
    assert (await shop.product(product["id"]))["stock"] == 9


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


async def test_tokens_we_did_not_issue_are_401_through_the_gateway(
    shop_via_gateway: GatewayShop,
) -> None:
    shop = shop_via_gateway
    secret, user = shop.system.secrets.jwt, shop.new_user()
    now = int(time.time())
    tokens = {
        "expired": mint(secret, str(user), "user", ttl_s=-60),
        "malformed": "not.a-token",
        "unsigned (alg none)": f"{_b64({'alg': 'none', 'typ': 'JWT'})}."
        f"{_b64({'sub': str(user), 'role': 'admin', 'exp': now + 60})}.",
        "wrongly signed": mint("z" * 48, str(user), "admin"),
        "the public local secret": mint("local-dev-secret", str(user), "admin"),
        "over-long-lived": mint(secret, str(user), "user", ttl_s=30 * 86_400),
    }
    for what, token in tokens.items():
        r = await shop.http.get(
            f"{shop.gateway_url}/points/{user}", headers={"Authorization": f"Bearer {token}"}
        )
        assert (r.status_code, r.json()["code"]) == (401, "UNAUTHENTICATED"), what
        assert r.headers["content-type"] == PROBLEM


async def test_the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy(
    recorder: tuple[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Requests without a token are limited per client address. 30 of them, each with another
    X-Forwarded-For: from an untrusted peer they are one address (limited); from a trusted proxy,
    30 addresses (none limited)."""
    address, seen = recorder

    async def statuses(trusted: str | None) -> list[int]:
        settings = {"GATEWAY_TRUSTED_PROXIES": trusted} if trusted else {}
        async with (
            Gateway(
                tmp_path_factory.mktemp("gateway-xff"),
                dict.fromkeys(SERVICES, address),
                issue_rate="1r/s",
                issue_burst=5,
                settings=settings,
            ) as gw,
            httpx.AsyncClient() as http,
        ):
            answers = await asyncio.gather(
                *(
                    http.post(
                        f"{gw.url}/coupons/1/issue",
                        json={"user_id": 1},
                        headers={"X-Forwarded-For": f"203.0.113.{i}"},
                    )
                    for i in range(30)
                )
            )
        return [a.status_code for a in answers]

    untrusted = await statuses(None)
    assert untrusted.count(429) >= 20, untrusted
    trusted = await statuses("127.0.0.1/32")
    assert trusted == [200] * 30
    assert seen[-1]["headers"].get("X-Real-IP", "").startswith("203.0.113.")


async def test_a_route_past_its_in_flight_cap_answers_429_at_once(
    recorder: tuple[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    address, _ = recorder
    async with (
        Gateway(
            tmp_path_factory.mktemp("gateway-cap"),
            dict.fromkeys(SERVICES, address),
            settings={"GATEWAY_IN_FLIGHT_MAX": "2"},
        ) as gw,
        httpx.AsyncClient(timeout=10) as http,
    ):
        answers = await asyncio.gather(*(http.get(f"{gw.url}/products/slow-{i}") for i in range(6)))
        after = await http.get(f"{gw.url}/products/1")
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) >= 2, statuses
    assert statuses.count(429) >= 1, statuses
    for answer in answers:
        if answer.status_code == 429:
            assert answer.headers["content-type"] == PROBLEM
            assert answer.json() == RATE_LIMITED
    assert after.status_code == 200  # the cap counts requests in flight, not a rate


# ------------------------------------------------------------------ what reaches an upstream


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]]

    def _answer(self) -> None:
        if "/slow" in self.path:
            time.sleep(0.5)  # a request that stays in flight
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        payload = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Request-ID", "upstream-made-this")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
async def recording_gateway(
    recorder: tuple[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    address, _ = recorder
    async with Gateway(
        tmp_path_factory.mktemp("gateway-rec"), dict.fromkeys(SERVICES, address)
    ) as gw:
        yield gw


@pytest.mark.parametrize(
    "path",
    [
        "/points/7/charge",
        "/points/7",
        "/points/7/history",
        "/products",
        "/products/3",
        "/products/3/stock",
        "/coupons",
        "/coupons/5",
        "/coupons/5/issue",
        "/users/7/coupons",
        "/orders",
        "/orders/0b4a3c0e-7d5e-4c59-9d43-0f0c3c8f7a10",
        "/users/7/orders",
        "/rankings/top-products",
    ],
)
async def test_every_api_path_is_routed_with_the_path_and_query_unchanged(
    recording_gateway: Gateway, recorder: tuple[str, list[dict[str, Any]]], path: str
) -> None:
    _, seen = recorder
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{recording_gateway.url}{path}?x=1")
    assert r.status_code == 200, r.text
    assert seen[-1]["path"] == f"{path}?x=1"


async def test_client_headers_reach_the_service_and_the_gateway_owns_the_request_id(
    recording_gateway: Gateway, recorder: tuple[str, list[dict[str, Any]]]
) -> None:
    _, seen = recorder
    headers = {
        "Authorization": "Bearer abc.def.ghi",
        "Idempotency-Key": "key-1",
        "Prefer": "wait=30",
        "X-Request-ID": "trace-7",
    }
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{recording_gateway.url}/orders", json={"user_id": 1}, headers=headers)
    assert r.status_code == 200
    got = {k.lower(): v for k, v in seen[-1]["headers"].items()}
    assert got["authorization"] == "Bearer abc.def.ghi"
    assert got["idempotency-key"] == "key-1"
    assert got["prefer"] == "wait=30"
    assert got["x-request-id"] == "trace-7"
    assert got["x-forwarded-for"] == "127.0.0.1"
    assert seen[-1]["body"] == b'{"user_id":1}'
    # The answer carries the gateway's request id once, not also the upstream's.
    assert r.headers.get_list("x-request-id") == ["trace-7"]

    async with httpx.AsyncClient() as http:
        r = await http.get(f"{recording_gateway.url}/products")
    made = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert {k.lower(): v for k, v in seen[-1]["headers"].items()}["x-request-id"] == made


async def test_an_unreachable_service_is_a_problem_json_502(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    async with (
        Gateway(tmp_path_factory.mktemp("gateway-dead"), dict.fromkeys(SERVICES, closed)) as gw,
        httpx.AsyncClient() as http,
    ):
        r = await http.get(f"{gw.url}/rankings/top-products", headers={"X-Request-ID": "r-1"})
    assert r.status_code == 502
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["x-request-id"] == "r-1"
    assert r.json() == {
        "type": "https://errors.shop.local/service-unavailable",
        "title": "Service unavailable",
        "status": 502,
        "detail": "The ranking service did not answer; retry in a moment.",
        "code": "SERVICE_UNAVAILABLE",
    }


# ------------------------------------------------------------------ who a request counts against


@pytest.fixture
async def strict_gateway(
    recorder: tuple[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """A gateway whose issue limit is 1 a minute with a burst of 3: 4 requests of one client
    pass, the 5th is 429."""
    address, _ = recorder
    async with Gateway(
        tmp_path_factory.mktemp("gateway-strict"),
        dict.fromkeys(SERVICES, address),
        issue_rate="1r/m",
        issue_burst=3,
    ) as gw:
        yield gw


async def _issue_statuses(gateway: Gateway, authorizations: Sequence[str | None]) -> list[int]:
    """POST /coupons/1/issue once per Authorization header (None: none), one after another."""
    statuses = []
    async with httpx.AsyncClient() as http:
        for authorization in authorizations:
            headers = {"Authorization": authorization} if authorization is not None else {}
            r = await http.post(
                f"{gateway.url}/coupons/1/issue", json={"user_id": 7}, headers=headers
            )
            statuses.append(r.status_code)
    return statuses


async def test_textual_variants_of_one_token_are_one_user(strict_gateway: Gateway) -> None:
    """PyJWT accepts a token with `=` after its signature, and "bearer" in any case: the gateway
    keys a token it verified by its subject, so every variant takes the same user's quota."""
    token = mint(TEST_JWT_SECRET, "7", "user")
    another_of_the_same_user = mint(TEST_JWT_SECRET, "7", "user", ttl_s=600)
    variants = [
        f"Bearer {token}",
        f"Bearer {token}=",
        f"bearer {token}",
        f"Bearer {another_of_the_same_user}",
        f"BEARER {token}=",
        f"Bearer  {token}",
    ]
    assert await _issue_statuses(strict_gateway, variants) == [200] * 4 + [429] * 2
    # Another user, and a request without a token, have buckets of their own.
    others = [f"Bearer {mint(TEST_JWT_SECRET, '8', 'user')}", None]
    assert await _issue_statuses(strict_gateway, others) == [200, 200]


async def test_tokens_the_gateway_cannot_vouch_for_share_their_address_bucket(
    strict_gateway: Gateway,
) -> None:
    """Expired, wrongly signed, unsigned and made-up tokens, each of another user: they count
    against the one client address, as a request without a token does."""
    now = int(time.time())
    unverifiable = [
        mint(TEST_JWT_SECRET, "21", "user", ttl_s=-60),
        mint("z" * 48, "22", "user"),
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': '23', 'role': 'user', 'exp': now + 60})}.",
        mint(TEST_JWT_SECRET, "24", "user", nbf=now + 600),
        "made-up-token-of-nobody-at-all",
        mint(TEST_JWT_SECRET, "26", "user", ttl_s=-1),
    ]
    statuses = await _issue_statuses(strict_gateway, [f"Bearer {t}" for t in unverifiable])
    assert statuses == [200] * 4 + [429] * 2
    assert await _issue_statuses(strict_gateway, [None]) == [429]
    # A verified user is not held back by its address.
    assert await _issue_statuses(
        strict_gateway, [f"Bearer {mint(TEST_JWT_SECRET, '27', 'user')}"]
    ) == [200]


# ------------------------------------------------------------------ slow clients and bodies


class _SlowUpload:
    """A request whose headers promise a body that never comes: nginx holds it while it waits
    for the body (each wait up to client_body_timeout)."""

    def __init__(self, port: int, path: str, authorization: str | None) -> None:
        self.port, self.path, self.authorization = port, path, authorization
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        auth = f"Authorization: {self.authorization}\r\n" if self.authorization else ""
        self.writer.write(
            (
                f"POST {self.path} HTTP/1.1\r\nHost: shop\r\n{auth}"
                "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            ).encode()
        )
        await self.writer.drain()

    async def answer(self, wait_s: float) -> bytes | None:
        """What the gateway answered within wait_s; None while it still waits for the body."""
        assert self.reader is not None
        try:
            answer = await asyncio.wait_for(self.reader.read(4096), wait_s)
        except TimeoutError:
            return None
        while chunk := await self._more():
            answer += chunk
        return answer

    async def _more(self) -> bytes:
        assert self.reader is not None
        try:
            return await asyncio.wait_for(self.reader.read(4096), 0.2)
        except TimeoutError:
            return b""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def test_a_slow_client_holds_only_its_own_slots_not_the_route(
    recorder: tuple[str, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A route takes 8 requests in flight, a client 3. A user holding 5 slow uploads, and a
    client with a made-up token doing the same from the same address: each gets 3 held and
    429 for the rest, and another user's orders are answered as usual meanwhile."""
    address, _ = recorder
    slow_user = f"Bearer {mint(TEST_JWT_SECRET, '31', 'user')}"
    other_user = {"Authorization": f"Bearer {mint(TEST_JWT_SECRET, '32', 'user')}"}
    async with (
        Gateway(
            tmp_path_factory.mktemp("gateway-slow"),
            dict.fromkeys(SERVICES, address),
            settings={"GATEWAY_IN_FLIGHT_MAX": "8", "GATEWAY_CLIENT_IN_FLIGHT_MAX": "3"},
        ) as gw,
        httpx.AsyncClient(timeout=10) as http,
    ):
        uploads = {
            who: [_SlowUpload(gw.port, "/orders", authorization) for _ in range(5)]
            for who, authorization in (("user", slow_user), ("made-up", "Bearer made.up.token"))
        }
        try:
            for upload in [u for group in uploads.values() for u in group]:
                await upload.start()
            for who, group in uploads.items():
                answers = await asyncio.gather(*(u.answer(1.0) for u in group))
                held = [a for a in answers if a is None]
                limited = [a for a in answers if a is not None]
                assert len(held) == 3, (who, answers)
                assert len(limited) == 2, (who, answers)
                for answer in limited:
                    assert answer.startswith(b"HTTP/1.1 429 "), answer
                    assert b"RATE_LIMITED" in answer

            for _ in range(3):
                r = await http.post(f"{gw.url}/orders", json={"user_id": 32}, headers=other_user)
                assert r.status_code == 200, r.text
            assert (await http.get(f"{gw.url}/products")).status_code == 200
            past_cap = await http.post(
                f"{gw.url}/orders", json={"user_id": 31}, headers={"Authorization": slow_user}
            )
            assert_problem(past_cap, 429, "RATE_LIMITED")
        finally:
            for upload in [u for group in uploads.values() for u in group]:
                upload.close()

        # Closed uploads give their slots back.
        deadline = time.monotonic() + 5
        while True:
            r = await http.post(
                f"{gw.url}/orders", json={"user_id": 31}, headers={"Authorization": slow_user}
            )
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 200, r.text


def _largest_order() -> bytes:
    """The largest body POST /orders takes (API.md: 50 lines), pretty-printed."""
    items = [{"product_id": 2**63 - 1 - i, "quantity": 1000} for i in range(50)]
    body = {"user_id": 2**63 - 1, "items": items, "user_coupon_id": 2**63 - 1}
    return json.dumps(body, indent=4).encode()


async def test_bodies_are_limited_to_what_each_route_takes(recording_gateway: Gateway) -> None:
    base = recording_gateway.url
    name = "가" * 100  # the longest name, every character escaped
    coupon = {
        "name": name,
        "discount_type": "PERCENT",
        "discount_value": 100,
        "total_quantity": 2**63 - 1,
        "valid_days": 3650,
        "min_order_amount": 2**63 - 1,
    }
    allowed = {
        "/orders": _largest_order(),
        "/coupons": json.dumps(coupon, indent=4).encode(),
        "/products": json.dumps({"name": name, "price": 2**63 - 1, "stock": 2**63 - 1}).encode(),
        "/points/7/charge": b'{"amount": 10000000}',
    }
    refused = {
        "/orders": b"[" + b" " * (16 * 1024) + b"]",
        "/coupons/5/issue": b"[" + b" " * (4 * 1024) + b"]",
        "/products/3/stock": b"[" + b" " * (4 * 1024) + b"]",
        "/points/7": b"[" + b" " * 1024 + b"]",
        "/users/7/orders": b"[" + b" " * 1024 + b"]",
    }
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient() as http:
        for path, body in allowed.items():
            r = await http.post(f"{base}{path}", content=body, headers=headers)
            assert r.status_code == 200, (path, len(body), r.text)
        for path, body in refused.items():
            r = await http.post(f"{base}{path}", content=body, headers=headers)
            assert_problem(r, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    ("path", "allow"),
    [("/products", "GET, POST"), ("/products/1", "GET"), ("/points/1/charge", "POST")],
)
async def test_a_trace_is_the_services_405_naming_the_methods_of_the_path(
    gateway: Gateway, path: str, allow: str
) -> None:
    """nginx refuses TRACE itself, as HTML without `Allow`: the request goes on to the service
    of the path, whose 405 is problem+json and names the methods the path has (RFC 9110)."""
    async with httpx.AsyncClient() as http:
        r = await http.request("TRACE", f"{gateway.url}{path}", headers={"X-Request-ID": "t-1"})
    assert_problem(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["allow"] == allow
    assert r.headers["x-request-id"] == "t-1"
    async with httpx.AsyncClient() as http:
        nowhere = await http.request("TRACE", f"{gateway.url}/nowhere")
    assert_problem(nowhere, 404, "NOT_FOUND")
