"""The relay's HTTP client on its own (no Kafka), against real HTTP servers: what one attempt
sends and what counts as failed."""

import hashlib
import hmac
import json
import uuid

import pytest

from dataplatform_standin import sign as standin_signature
from order.relay.platform import DataPlatformClient, DeliveryFailed
from order.relay.signing import signature
from shopkit.testing import PeerRequest, free_port
from shopkit.testing.plugin import ServePeer

BODY = json.dumps({"order_id": str(uuid.uuid4()), "total": 1_000}).encode()


def test_the_signature_is_hex_hmac_sha256_of_the_body() -> None:
    expected = hmac.new(b"secret", BODY, hashlib.sha256).hexdigest()
    assert signature(BODY, "secret") == f"sha256={expected}"
    assert signature(BODY, "secret") == standin_signature(BODY, "secret")


async def test_an_attempt_posts_the_exact_body_with_key_and_signature(
    http_peer: ServePeer,
) -> None:
    async def created(_: PeerRequest) -> tuple[int, bytes]:
        return 201, b"{}"

    key = uuid.uuid4()
    async with http_peer(created) as platform:
        client = DataPlatformClient(f"{platform.url}/api/", "s3cret", 1.0)
        assert await client.post_order(key, BODY) == 201
        await client.aclose()
    [request] = platform.requests
    assert (request.method, request.path) == ("POST", "/api/orders")
    assert request.body == BODY
    assert request.headers["idempotency-key"] == str(key)
    assert request.headers["x-signature"] == signature(BODY, "s3cret")
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("status", [400, 401, 409, 429, 500, 503])
async def test_any_answer_but_2xx_is_a_failed_attempt(status: int, http_peer: ServePeer) -> None:
    async def refused(_: PeerRequest) -> tuple[int, bytes]:
        return status, b"nope"

    async with http_peer(refused) as platform:
        client = DataPlatformClient(platform.url, "s", 1.0)
        with pytest.raises(DeliveryFailed, match=f"HTTP {status}: nope") as failed:
            await client.post_order(uuid.uuid4(), BODY)
        await client.aclose()
    assert failed.value.permanent == (status in (400, 409))


async def test_no_answer_is_a_failed_attempt() -> None:
    client = DataPlatformClient(f"http://127.0.0.1:{free_port()}", "s", 1.0)  # nobody listens
    with pytest.raises(DeliveryFailed, match="ClientConnectorError") as failed:
        await client.post_order(uuid.uuid4(), BODY)
    await client.aclose()
    assert not failed.value.permanent
