"""The relay's HTTP client on its own (no Kafka): what one attempt sends and what counts as failed."""

import hashlib
import hmac
import json
import uuid

import httpx
import pytest

from dataplatform_standin import sign as standin_signature
from order.relay.platform import DataPlatformClient, DeliveryFailed
from order.relay.signing import signature

BODY = json.dumps({"order_id": str(uuid.uuid4()), "total": 1_000}).encode()


def test_the_signature_is_hex_hmac_sha256_of_the_body() -> None:
    expected = hmac.new(b"secret", BODY, hashlib.sha256).hexdigest()
    assert signature(BODY, "secret") == f"sha256={expected}"
    assert signature(BODY, "secret") == standin_signature(BODY, "secret")


async def test_an_attempt_posts_the_exact_body_with_key_and_signature() -> None:
    seen: list[httpx.Request] = []

    def platform(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201)

    key = uuid.uuid4()
    client = DataPlatformClient(
        "http://platform.test/api/", "s3cret", 1.0, transport=httpx.MockTransport(platform)
    )
    assert await client.post_order(key, BODY) == 201
    await client.aclose()
    [request] = seen
    assert str(request.url) == "http://platform.test/api/orders"
    assert request.content == BODY
    assert request.headers["Idempotency-Key"] == str(key)
    assert request.headers["X-Signature"] == signature(BODY, "s3cret")
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("status", [400, 401, 409, 429, 500, 503])
async def test_any_answer_but_2xx_is_a_failed_attempt(status: int) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, text="nope"))
    client = DataPlatformClient("http://platform.test", "s", 1.0, transport=transport)
    with pytest.raises(DeliveryFailed, match=f"HTTP {status}: nope"):
        await client.post_order(uuid.uuid4(), BODY)
    await client.aclose()


async def test_no_answer_is_a_failed_attempt() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = DataPlatformClient(
        "http://platform.test", "s", 1.0, transport=httpx.MockTransport(unreachable)
    )
    with pytest.raises(DeliveryFailed, match="ConnectError: refused"):
        await client.post_order(uuid.uuid4(), BODY)
    await client.aclose()
