"""HTTP peers of the test's own making: a server whose every answer the test decides (an
external platform that refuses, or hangs on one request), keeping what it was sent."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from shopkit.testing.servers import running_server


@dataclass(frozen=True)
class PeerRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[[PeerRequest], Awaitable[tuple[int, bytes]]]


@dataclass
class HttpPeer:
    """An HTTP peer of the test's own making (e.g. an external platform that hangs on one
    request), served over real HTTP by `running_server`: `answer` gets each request and says
    what to answer; `requests` keeps them."""

    answer: Answer
    requests: list[PeerRequest] = field(default_factory=list)
    url: str = ""
    """Its base URL while `served_peer` serves it."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = PeerRequest(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=b"".join(chunks),
        )
        self.requests.append(request)
        status, body = await self.answer(request)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def served_peer(answer: Answer) -> AsyncIterator[HttpPeer]:
    """An HttpPeer answering with `answer`, served over real HTTP until the block ends (its
    `url` set meanwhile): one call instead of a peer and a server to pair in every test."""
    peer = HttpPeer(answer)
    async with running_server(peer) as url:
        peer.url = url
        yield peer
