"""The fast path of an endpoint, derived from its one definition: the FastAPI route.

An endpoint is written once, as a FastAPI route (path, method, status, request and response
models, who may call it, the use case). A route whose endpoint is marked `@fast` is also
served by a fast path that this module derives from that route when the app starts, the way
cosmicpython's bootstrap reads handler signatures once: the route's path regex, its status and
response model, and the endpoint's own signature (path ids, the body model, `Request`,
`Response`, headers and `Depends` coroutines). At a request the fast path does what FastAPI's
route would, without FastAPI's per-request machinery (generic dependency solving, response
validation through a new field, a Request per layer), which cost 3-5x the work itself on these
paths (benchmarks/PROFILE.md): it calls the same endpoint with the same arguments.

It serves only the plain case. Before the endpoint runs, anything else hands the request on to
FastAPI's route unchanged (the body it read is replayed), so every other answer is FastAPI's
own:
- a path parameter, header, query string or body the definition would not take as given (an
  id out of range, a body the model refuses or of another content type, a body cut short by
  a client disconnect);
- a header or query parameter the request sends at all (an `Idempotency-Key`, `Prefer`): the
  fast path only calls endpoints with those parameters' defaults.

An error the endpoint raises is rendered by the app's own exception handler for it, as FastAPI's
ExceptionMiddleware would; anything without one goes up to the request middleware, which renders
it for both paths alike (shopkit.http.app). `test_fast_paths` in every service sends the same
requests to both paths and compares the answers.

What a definition uses must be derivable, or the app refuses to start: a `Depends` is an
`async def` (not a generator: a use case opens its own unit of work), the body is one pydantic
model, and no cookie, form or security-scope parameters.
"""

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, TypeVar, get_args, get_origin, get_type_hints

import orjson
from fastapi import params
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

F = TypeVar("F", bound=Callable[..., Any])
_MARK: Final = "__shop_fast__"
_JSON: Final = (b"content-type", b"application/json")
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
FAST_PATH: Final = "shop.fast_path"
"""set in the scope of a request the fast path serves (tests tell the two paths apart by it)"""


def fast(endpoint: F) -> F:
    """Serve this route's plain requests by the fast path derived from it (under the route's
    decorator: `@router.post(...)` then `@fast`)."""
    setattr(endpoint, _MARK, True)
    return endpoint


class HandOff(Exception):
    """The request is not the plain case: FastAPI's route answers it."""


@dataclass
class _Call:
    """One request on its way through the fast path."""

    scope: Scope
    receive: Receive
    path: dict[str, str]
    body: bytes
    request: Request | None = None
    response: Response | None = None
    cache: dict[Callable[..., Any], Any] = field(default_factory=dict)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    def the_request(self) -> Request:
        if self.request is None:
            self.request = Request(self.scope, self.receive)
        return self.request

    def the_response(self) -> Response:
        if self.response is None:  # FastAPI's temporal response: status and headers only
            self.response = Response()
            del self.response.headers["content-length"]
            self.response.status_code = None  # type: ignore[assignment]
        return self.response


Resolve = Callable[[_Call], Any]


@dataclass(frozen=True)
class _Plan:
    """A callable and how to produce each of its arguments: its dependencies first (awaited,
    in order, as FastAPI solves them), then the values read from the request."""

    call: Callable[..., Awaitable[Any]]
    dependencies: tuple[tuple[str, "_Plan"], ...]
    values: tuple[tuple[str, Resolve], ...]
    cached: bool

    async def run(self, call: _Call) -> Any:
        if self.cached and self.call in call.cache:
            return call.cache[self.call]
        kwargs = {}
        for name, dependency in self.dependencies:
            kwargs[name] = await dependency.run(call)
        for name, resolve in self.values:
            kwargs[name] = resolve(call)
        value = await self.call(**kwargs)
        if self.cached:
            call.cache[self.call] = value
        return value


def _plan(
    call: Callable[..., Any], route: APIRoute, *, cached: bool = True, endpoint: bool = False
) -> _Plan:
    if not inspect.iscoroutinefunction(call):
        raise TypeError(f"{route.path}: {call!r} must be an `async def` for a fast path")
    hints = get_type_hints(call, include_extras=True)
    dependencies: list[tuple[str, _Plan]] = []
    others: list[tuple[str, Resolve]] = []
    for parameter in inspect.signature(call).parameters.values():
        annotation = hints.get(parameter.name, Any)
        base: Any = annotation
        markers: tuple[Any, ...] = ()
        if get_origin(annotation) is Annotated:
            base, *rest = get_args(annotation)
            markers = tuple(rest)
        if isinstance(parameter.default, params.Depends | params.Param | params.Body):
            markers = (*markers, parameter.default)
        marker = next(
            (m for m in markers if isinstance(m, params.Depends | params.Param | params.Body)),
            None,
        )
        name = parameter.name
        if isinstance(marker, params.Depends):
            dependency = marker.dependency
            if dependency is None:
                raise TypeError(f"{route.path}: Depends() without a callable in {name}")
            dependencies.append((name, _plan(dependency, route, cached=marker.use_cache)))
        elif isinstance(base, type) and issubclass(base, Request):
            others.append((name, _request))
        elif isinstance(base, type) and issubclass(base, Response):
            others.append((name, _response))
        elif isinstance(marker, params.Path) or name in route.param_convertors:
            others.append((name, _path_param(name, annotation)))
        elif isinstance(marker, params.Header):
            alias = marker.alias or (name.replace("_", "-") if marker.convert_underscores else name)
            others.append((name, _absent_header(alias.lower().encode("latin-1"), parameter)))
        elif isinstance(marker, params.Query) or (
            marker is None
            and not _is_model(base)
            and parameter.default is not inspect.Parameter.empty
        ):
            others.append((name, _absent_query(parameter, marker)))
        elif _is_model(base) and (marker is None or type(marker) is params.Body):
            if marker is not None and marker.embed:
                raise TypeError(f"{route.path}: an embedded body ({name}) has no fast path")
            if not endpoint:
                raise TypeError(f"{route.path}: a body in a dependency ({name}) has no fast path")
            others.append((name, _body(base)))
        else:
            raise TypeError(f"{route.path}: parameter {name} ({annotation!r}) has no fast path")
    return _Plan(call, tuple(dependencies), tuple(others), cached)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _request(call: _Call) -> Request:
    return call.the_request()


def _response(call: _Call) -> Response:
    return call.the_response()


def _path_param(name: str, annotation: Any) -> Resolve:
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)

    def resolve(call: _Call) -> Any:
        try:
            return adapter.validate_python(call.path[name])
        except ValidationError:
            raise HandOff from None

    return resolve


def _absent_header(name: bytes, parameter: inspect.Parameter) -> Resolve:
    default = _default(parameter)

    def resolve(call: _Call) -> Any:
        if call.header(name) is not None:
            raise HandOff
        return default

    return resolve


def _absent_query(parameter: inspect.Parameter, marker: Any) -> Resolve:
    default = _default(parameter) if marker is None else marker.default

    def resolve(call: _Call) -> Any:
        if call.scope.get("query_string"):
            raise HandOff
        return default

    return resolve


def _default(parameter: inspect.Parameter) -> Any:
    default = parameter.default
    if isinstance(default, params.Param):
        default = default.default
    if default is inspect.Parameter.empty or default is ...:
        raise TypeError(f"parameter {parameter.name} needs a default for a fast path")
    return default


def _body(model: type[BaseModel]) -> Resolve:
    """As FastAPI: the JSON body, validated as the model (validate_python). orjson takes a
    subset of what json.loads takes (strict RFC 8259: no NaN, no lone surrogates, no int past
    64 bits) and reads the rest alike: what it refuses goes on to FastAPI."""
    adapter: TypeAdapter[Any] = TypeAdapter(model)

    def resolve(call: _Call) -> Any:
        content_type = call.header(b"content-type")
        if (
            not call.body
            or content_type is None
            or content_type.split(b";")[0].strip().lower() != b"application/json"
        ):
            raise HandOff
        try:
            return adapter.validate_python(orjson.loads(call.body), from_attributes=True)
        except (orjson.JSONDecodeError, ValidationError):
            raise HandOff from None

    return resolve


@dataclass(frozen=True)
class FastRoute:
    """A route's fast path: the route, its endpoint's plan and how its answer is rendered."""

    route: APIRoute
    method: str
    plan: _Plan
    reads_body: bool
    response: TypeAdapter[Any]
    model: Any
    """the response model: an instance of exactly it is not validated again (FastAPI's own
    validation passes it through unchanged)"""

    @classmethod
    def derive(cls, route: APIRoute) -> "FastRoute":
        methods = route.methods or set()
        if len(methods) != 1 or route.response_model is None:
            raise TypeError(f"{route.path}: a fast path needs one method and a response model")
        (method,) = methods
        plan = _plan(route.endpoint, route, cached=False, endpoint=True)
        return cls(
            route,
            method,
            plan,
            reads_body=method in _BODY_METHODS,
            response=TypeAdapter(route.response_model),
            model=_unrevalidated(route.response_model),
        )

    def render(self, value: Any, call: _Call) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """As FastAPI's route: the value validated as the response model and dumped to JSON;
        the status and headers the endpoint set on its `Response` parameter win."""
        if type(value) is not self.model:
            value = self.response.validate_python(value, from_attributes=True)
        body = self.response.dump_json(value, by_alias=True)
        temporal = call.response
        status = (temporal.status_code if temporal else None) or self.route.status_code or 200
        headers = [(b"content-length", str(len(body)).encode()), _JSON]
        if temporal is not None:
            headers.extend(temporal.raw_headers)
        return status, headers, body


def _unrevalidated(model: Any) -> Any:
    """The model whose instances validate as themselves, or None."""
    if _is_model(model) and model.model_config.get("revalidate_instances", "never") == "never":
        return model
    return None


def derive(routes: Sequence[Any]) -> tuple[FastRoute, ...]:
    """The fast paths of the routes whose endpoint is marked `@fast`."""
    return tuple(
        FastRoute.derive(route)
        for route in routes
        if isinstance(route, APIRoute) and getattr(route.endpoint, _MARK, False)
    )


@dataclass
class FastPaths:
    """The app's fast paths (app.state.fast_paths); `enabled` False sends everything to
    FastAPI (a switch for operators and for the test that compares both paths)."""

    routes: tuple[FastRoute, ...] = ()
    enabled: bool = True
    served: int = 0
    """requests answered by a fast path (the comparison test checks it was the one)"""

    def match(self, scope: Scope) -> tuple[FastRoute, dict[str, str]] | None:
        if not self.enabled or scope.get("root_path"):
            return None
        method, path = scope["method"], scope["path"]
        for candidate in self.routes:
            if candidate.method != method:
                continue
            found = candidate.route.path_regex.match(path)
            if found is not None:
                return candidate, found.groupdict()
        return None


class FastPathMiddleware:
    """ASGI middleware in front of FastAPI's router: a request of a fast route is answered by
    its fast path, unless that hands it on; every other request goes on unread."""

    def __init__(self, app: ASGIApp, paths: FastPaths) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self.paths.match(scope) if scope["type"] == "http" else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        fast_route, path = matched
        messages: list[Message] = []
        body = b""
        if fast_route.reads_body:
            body, messages, complete = await _read_body(receive)
            if not complete:  # the client went away mid-body: FastAPI's answer, never acted on
                await self.app(scope, _replay(messages, receive), send)
                return
        call = _Call(scope, receive, path, body)
        scope[FAST_PATH] = True
        try:
            value = await fast_route.plan.run(call)
        except HandOff:
            del scope[FAST_PATH]
            await self.app(scope, _replay(messages, receive) if messages else receive, send)
            return
        except Exception as exc:
            scope["route"] = fast_route.route
            await _render_error(scope, receive, send, exc)
            return
        scope["route"] = fast_route.route
        self.paths.served += 1
        if isinstance(value, Response):  # as FastAPI: a Response is sent as it is
            await value(scope, receive, send)
            return
        status, headers, content = fast_route.render(value, call)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def _render_error(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """By the app's handler for the exception's class, as FastAPI's ExceptionMiddleware does;
    an exception only `Exception` handles goes up to the request middleware (app.py)."""
    handlers: dict[Any, Any] = scope["app"].exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        handler = handlers.get(cls)
        if handler is not None:
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
    raise exc


async def _read_body(receive: Receive) -> tuple[bytes, list[Message], bool]:
    """The body, the messages it came in, and whether it came whole (no disconnect first)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return b"", messages, False
        if not message.get("more_body", False):
            break
    if len(messages) == 1:
        return bytes(messages[0].get("body", b"")), messages, True
    return b"".join(m.get("body", b"") for m in messages), messages, True


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """The messages already read, in order, then the connection's own."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
