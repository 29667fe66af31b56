"""Hot routes: the few requests a service answers thousands of times a second (a coupon issue, a
charge, a product or top-5 read) served without FastAPI's routing, dependency solving and
response validation, which cost 3-5x the work itself (benchmarks/PROFILE.md).

A hot route is the same endpoint as its FastAPI route, declared once more for speed: the same
path, the same request and response models (pydantic), the same use case, the same error
rendering (the app's exception handlers). Its handler only serves the plain case: it returns
None for anything else (a body the model refuses, a header it does not handle) before doing
anything, and the request goes on to the FastAPI route with its body, which answers it as
always. Request ids, the request's span and latency metrics come from RequestContextMiddleware
around both.
"""

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopkit.http.auth import authorize, claims_of

MAX_ID: Final = 2**63 - 1
_PARAM: Final = re.compile(r"\{(\w+)\}")
_JSON: Final = (b"content-type", b"application/json")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class HotRequest:
    scope: Scope
    ids: tuple[int, ...]
    """the path's parameters, in order: ids from 1 to 2**63 - 1 (other paths go on to FastAPI)"""
    body: bytes

    @property
    def state(self) -> Any:
        """The app's state (runtime, settings and what the service put there)."""
        return self.scope["app"].state

    def header(self, name: bytes) -> bytes | None:
        """A request header by its lower-case name."""
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    def authorize(self, user_id: int) -> None:
        """As `shopkit.http.auth.authorize_user`: the bearer token of that user or an admin (401 when
        the token is invalid or missing, 403 for another user)."""
        authorization = self.header(b"authorization")
        settings = self.state.settings
        claims = claims_of(
            None if authorization is None else authorization.decode("latin-1"), settings
        )
        authorize(settings, claims, user_id)

    def json(self, model: type[M]) -> M | None:
        """The body as `model`, or None when FastAPI would not take it as that model's JSON
        (another content type, or the model refuses it): FastAPI then answers with its 422."""
        content_type = self.header(b"content-type")
        if content_type is None or content_type.split(b";")[0].strip() != b"application/json":
            return None
        try:
            return model.model_validate_json(self.body)
        except ValidationError:
            return None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    """besides content-type and content-length"""

    @classmethod
    def model(
        cls, status: int, model: BaseModel, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> "Reply":
        return cls(status, model.__pydantic_serializer__.to_json(model), headers)


Handler = Callable[[HotRequest], Awaitable[Reply | None]]


@dataclass(frozen=True)
class HotRoute:
    method: str
    path: str
    """the FastAPI route's path template (the metrics' and span's route label)"""
    handler: Handler
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        parts = _PARAM.split(self.path)  # literal, name, literal, …
        regex = "".join(
            re.escape(part) if i % 2 == 0 else r"([1-9][0-9]{0,18})" for i, part in enumerate(parts)
        )
        object.__setattr__(self, "pattern", re.compile(regex + "$"))

    def match(self, method: str, path: str) -> tuple[int, ...] | None:
        if method != self.method:
            return None
        found = self.pattern.match(path)
        if found is None:
            return None
        ids = tuple(int(v) for v in found.groups())
        return ids if all(v <= MAX_ID for v in ids) else None


class HotRoutes:
    """ASGI middleware in front of FastAPI's router: a request of a hot route is answered by
    its handler, unless the handler hands it on (None); every other request goes on unread."""

    def __init__(self, app: ASGIApp, routes: Sequence[HotRoute]) -> None:
        self.app = app
        self.routes = tuple(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.routes:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        for route in self.routes:
            ids = route.match(method, path)
            if ids is not None:
                break
        else:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive) if method in ("POST", "PUT", "PATCH") else b""
        try:
            reply = await route.handler(HotRequest(scope, ids, body))
        except Exception as exc:
            scope["route"] = route
            await self._error(scope, receive, send, exc)
            return
        if reply is None:  # not the plain case: FastAPI answers, with the body read here
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = route
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    _JSON,
                    (b"content-length", str(len(reply.body)).encode()),
                    *reply.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})

    async def _error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """Rendered by the app's own exception handler for it (as a FastAPI route's error)."""
        handlers: dict[Any, Any] = scope["app"].exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                response = await handler(Request(scope, receive), exc)
                await response(scope, receive, send)
                return
        raise exc


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, when the client goes

    return replay
