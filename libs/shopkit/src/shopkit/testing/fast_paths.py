"""The test that an endpoint's fast path (shopkit.http.fast) answers as its FastAPI route does.

`assert_paths_agree` sends the same requests to a served app twice, once with its fast paths on
and once with them off (everything then goes to FastAPI), over real HTTP, and compares what a
client and an operator see: the status, the body, the problem code, `WWW-Authenticate`,
`X-Request-Id` and the latency metric's labels. The requests, for each endpoint:

- valid (by a fresh user, so that both paths act: the fields that name the user or what was
  made, `volatile`, are compared by presence only), and valid with its integers written as
  whole floats (`7.0`: JSON Schema's integer, shopkit.http.numbers);
- invalid fields, a missing body field, extra fields, another content type, an id out of range,
  an integer written as a fraction, as `true` or as a float too large to be exact;
- no token, a bad token, and another user's token;
- a body cut short by a client disconnect, which must never be acted on (`state` is the same
  before and after) and is answered alike.

Every endpoint with a fast path must be listed: a new one without a comparison fails.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from shopkit.http.auth import mint
from shopkit.http.fast import FastPaths
from shopkit.settings import ServiceSettings
from shopkit.testing import running_server

_LATENCY = "http_request_duration_seconds_count"
_ids = count(1)


S = TypeVar("S", bound=ServiceSettings)


@dataclass(frozen=True)
class Served:
    """A service's app served API-only for the comparison, and a client of it as an admin
    (to make what the endpoints need and to read what they changed)."""

    app: FastAPI
    url: str
    admin: httpx.AsyncClient

    async def agree(self, endpoints: list["Endpoint"]) -> None:
        await assert_paths_agree(self.app, self.url, endpoints)


@asynccontextmanager
async def served(create_app: Callable[[S], FastAPI], settings: S) -> AsyncIterator[Served]:
    app = create_app(settings.model_copy(update={"run_workers": False}))
    admin = {"Authorization": f"Bearer {mint(settings.jwt_secret, '1', 'admin')}"}
    async with (
        running_server(app) as url,
        httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as client,
    ):
        yield Served(app, url, client)


@dataclass(frozen=True)
class Endpoint:
    """A fast endpoint and how to call it validly as a given user."""

    route: str
    """the route's path template, as the app declares it"""
    method: str
    request: Callable[[int], tuple[str, dict[str, Any] | None]]
    """for a user id: the path to call and the JSON body (None: no body)"""
    volatile: frozenset[str] = frozenset()
    """body fields that differ between two valid calls (ids, times, the caller)"""
    state: Callable[[int], Awaitable[Any]] | None = None
    """what a valid request of that user would change (checked untouched by a cut-short body)"""


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None
    cut_short: bool = False
    user: int = 0


@dataclass(frozen=True)
class Answer:
    status: int | None
    body: Any
    code: str | None
    www_authenticate: str | None
    request_id: str | None
    metrics: dict[tuple[str, str, str], float] = field(default_factory=dict)


def _probes(endpoint: Endpoint, secret: str, user: int) -> list[Probe]:
    """The probes of `endpoint` by `user` (the valid one is made anew for each path: `_valid`)."""
    path, body = endpoint.request(user)
    json_type = {"Content-Type": "application/json"} if body is not None else {}
    mine = {**json_type, **_token(secret, user)}
    content = None if body is None else json.dumps(body).encode()

    def probe(name: str, **changes: Any) -> Probe:
        values: dict[str, Any] = {"path": path, "headers": mine, "body": content, **changes}
        return Probe(name=name, method=endpoint.method, user=user, **values)

    probes = [
        probe("another user's token", headers={**json_type, **_token(secret, user + 1)}),
        probe("no token", headers=json_type),
        probe("a bad token", headers={**json_type, "Authorization": "Bearer not-a-token"}),
    ]
    if re.search(r"/\d+", path):
        probes.append(probe("an id out of range", path=re.sub(r"/\d+", "/0", path, count=1)))
    if body is None:
        return probes
    probes.append(probe("no body fields", body=b"{}"))
    for name in body:
        wrong = json.dumps({**body, name: [name]}).encode()
        probes.append(probe(f"{name} of a wrong type", body=wrong))
    for name, value in body.items():
        if type(value) is int:
            written: list[tuple[object, str]] = [(value + 0.5, "a fraction"), (True, "true")]
            written.append((2.0**53, "2^53, past an exact float"))
            for number, what in written:
                content = json.dumps({**body, name: number}).encode()
                probes.append(probe(f"{name} written as {what}", body=content))
    probes += [
        probe("an extra field", body=json.dumps({**body, "unexpected": 1}).encode()),
        probe("broken JSON", body=b"{"),
        probe("another content type", headers={**mine, "Content-Type": "text/plain"}),
        probe("a body cut short by a disconnect", cut_short=True),
    ]
    return probes


def _valid(endpoint: Endpoint, secret: str, user: int, *, whole_floats: bool = False) -> Probe:
    path, body = endpoint.request(user)
    headers = {**_token(secret, user)}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = _as_floats(body) if whole_floats else body
    content = None if body is None else json.dumps(body).encode()
    name = "valid, integers written as whole floats" if whole_floats else "valid"
    return Probe(name, endpoint.method, path, headers, content, user=user)


def _as_floats(value: Any) -> Any:
    """Every integer of a JSON value as the whole float it is (`7` → `7.0`)."""
    if type(value) is int:
        return float(value)
    if isinstance(value, dict):
        return {k: _as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    return value


def _token(secret: str, user: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(secret, str(user), 'user')}"}


async def _send(base_url: str, probe: Probe, request_id: str) -> tuple[int | None, bytes, bytes]:
    """The probe over a connection of its own; (status, headers, body), or no status when the
    client went away mid-body."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    body = probe.body or b""
    head = [f"{probe.method} {probe.path} HTTP/1.1", f"Host: {url.netloc}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in probe.headers.items()]
    head += [f"X-Request-ID: {request_id}", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if probe.cut_short:
        writer.write(body[: len(body) // 2])
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        return None, b"", b""
    writer.write(body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    header, _, content = raw.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return status, header.lower(), content


def _latency_samples() -> dict[tuple[str, str, str], float]:
    samples: dict[tuple[str, str, str], float] = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == _LATENCY:
                labels = sample.labels
                samples[(labels["method"], labels["route"], labels["status"])] = sample.value
    return samples


def _new_samples(
    before: dict[tuple[str, str, str], float], route: str
) -> dict[tuple[str, str, str], float]:
    """What the endpoint's route observed since `before` (the state reads are other routes')."""
    after = _latency_samples()
    return {
        k: v - before.get(k, 0.0)
        for k, v in after.items()
        if v != before.get(k, 0.0) and k[1] in (route, "unmatched")
    }


def _header(headers: bytes, name: bytes) -> str | None:
    for line in headers.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip() == name:
            return value.strip().decode("latin-1")
    return None


async def _answer(base_url: str, probe: Probe, endpoint: Endpoint) -> Answer:
    state = endpoint.state
    before_state = None if state is None else await state(probe.user)
    before = _latency_samples()
    request_id = f"probe-{next(_ids)}"
    status, headers, content = await _send(base_url, probe, request_id)
    metrics = _new_samples(before, endpoint.route)
    for _ in range(500):  # a cut-short request ends in the server after the client has gone
        if metrics:
            break
        await asyncio.sleep(0.01)
        metrics = _new_samples(before, endpoint.route)
    if probe.cut_short and state is not None:
        assert await state(probe.user) == before_state, f"{probe.path}: a cut-short body acted"
    try:
        body: Any = json.loads(content) if content else None
    except ValueError:
        body = content.decode("latin-1")
    if isinstance(body, dict):
        body = {k: ("<volatile>" if k in endpoint.volatile else v) for k, v in body.items()}
    echoed = _header(headers, b"x-request-id")
    return Answer(
        status=status,
        body=body,
        code=body.get("code") if isinstance(body, dict) else None,
        www_authenticate=_header(headers, b"www-authenticate"),
        request_id="echoed" if echoed == request_id else echoed,
        metrics=metrics,
    )


async def assert_paths_agree(app: FastAPI, base_url: str, endpoints: list[Endpoint]) -> None:
    """Every fast endpoint of `app` (served at `base_url`) answers each probe as its FastAPI
    route does; `app` has its fast paths on again afterwards."""
    paths: FastPaths = app.state.fast_paths
    declared = {(r.method, r.route.path) for r in paths.routes}
    listed = {(e.method, e.route) for e in endpoints}
    assert declared == listed, f"list every fast endpoint: {declared} != {listed}"
    secret = app.state.settings.jwt_secret
    try:
        for endpoint in endpoints:
            user = _fresh_user()
            pairs = [(_valid(endpoint, secret, _fresh_user()), _valid(endpoint, secret, user))]
            if endpoint.request(user)[1] is not None:
                pairs.append(
                    (
                        _valid(endpoint, secret, _fresh_user(), whole_floats=True),
                        _valid(endpoint, secret, _fresh_user(), whole_floats=True),
                    )
                )
            pairs += [(p, p) for p in _probes(endpoint, secret, user + 2)]
            for on_fast, on_fastapi in pairs:
                where = f"{endpoint.method} {endpoint.route}: {on_fast.name}"
                paths.enabled = True
                served = paths.served
                fast_answer = await _answer(base_url, on_fast, endpoint)
                if on_fast.name.startswith("valid"):
                    assert paths.served == served + 1, f"{where}: not served by the fast path"
                paths.enabled = False
                fastapi_answer = await _answer(base_url, on_fastapi, endpoint)
                assert fast_answer == fastapi_answer, where
    finally:
        paths.enabled = True


def _fresh_user() -> int:
    return 2**40 + next(_ids) * 10
