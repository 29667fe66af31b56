"""The HTTP shell every service shares: app factory with lifespan, problem+json rendering of
every error (one place), request ids, latency metrics, /healthz, /readyz and /metrics."""

import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import Field
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shop_contracts import INT64_MAX, PROBLEM_MEDIA_TYPE, ErrorCode, FieldError, Problem
from shopkit.database.uow import UnitOfWorkFactory
from shopkit.errors import DomainError, Unauthenticated
from shopkit.http.answers import document_answers
from shopkit.http.fast import FastPathMiddleware, FastPaths, derive
from shopkit.http.numbers import Integral
from shopkit.ops import tracing
from shopkit.ops.faults import is_transient
from shopkit.ops.logging import get_logger
from shopkit.ops.metrics import HTTP_LATENCY, exposition
from shopkit.ops.runtime import Runtime
from shopkit.settings import ServiceSettings

log = get_logger(__name__)

MAX_ID = INT64_MAX  # ids are bigints; so are the amounts events carry (shop_contracts)
RETRY_AFTER_S = "1"
"""Every 503 a request gets says when to try again (API.md: never a 500 because a dependency
restarted, a 503 with Retry-After while it is away)."""
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
StrictId = Annotated[int, Field(strict=True, ge=1, le=MAX_ID), Integral]
"""An id in a JSON body: an integer (`7` or `7.0`, never `"7"` nor `true`: shopkit.http.numbers)."""


def problem(status: int, code: ErrorCode, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = Problem(
        type=f"https://errors.shop.local/{code.value.lower().replace('_', '-')}",
        title=title,
        status=status,
        detail=detail,
        code=code,
        **extra,
    ).body()
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


async def _domain_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    response = problem(exc.status, exc.code, exc.title, exc.detail)
    if exc.status == 503:  # a use case's own "not now" (shopkit.errors.Unavailable), as below
        response.headers["Retry-After"] = RETRY_AFTER_S
    if isinstance(exc, Unauthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="shop"'  # RFC 6750
    return response


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(
            loc=list(e.get("loc", [])), msg=str(e.get("msg", "")), type=str(e.get("type", ""))
        )
        for e in exc.errors()
    ]
    fields = ", ".join(".".join(str(p) for p in e.loc) for e in errors)
    return problem(
        422,
        ErrorCode.VALIDATION_ERROR,
        "Invalid request",
        f"Invalid fields: {fields}",
        errors=[e.model_dump() for e in errors],
    )


_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot even decode (not UTF-8): malformed JSON, which
        # API.md answers 422 like any other.
        return problem(
            422,
            ErrorCode.VALIDATION_ERROR,
            "Invalid request",
            "Invalid fields: body",
            errors=[
                FieldError(loc=["body"], msg=str(exc.detail), type="json_invalid").model_dump()
            ],
        )
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.VALIDATION_ERROR)
    response = problem(exc.status_code, code, str(exc.detail), str(exc.detail))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405 and isinstance(request.app, ShopApp):
        # Starlette names the methods of the first route on the path only (GET of /products,
        # not its POST): RFC 9110 wants all of them.
        response.headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
    return response


def allowed_methods(app: "ShopApp", scope: Scope) -> list[str]:
    """The methods the app's routes serve on the request's path, in the usual order."""
    path = scope["path"]
    root_path = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    methods: set[str] = set()
    for route in app.plain_routes():
        if route.methods and route.path_regex.match(path):
            methods |= route.methods
    known = [m for m in _METHOD_ORDER if m in methods]
    return known + sorted(methods - set(known))


def _unavailable(title: str, detail: str) -> Response:
    """503 with Retry-After: the request may be sent again in a moment."""
    response = problem(503, ErrorCode.SERVICE_UNAVAILABLE, title, detail)
    response.headers["Retry-After"] = RETRY_AFTER_S
    return response


async def _pool_exhausted(_: Request, exc: Exception) -> Response:
    log.warning("db_pool_exhausted", error=str(exc))
    return _unavailable("Busy", "The service is saturated; try again in a moment.")


async def _unexpected_error(_: Request, exc: Exception) -> Response:
    if is_transient(exc):
        # The database or another dependency failed for a moment (a restart, a statement
        # timeout, a deadlock): the request can be retried, it is not a bug of ours.
        log.warning("request_failed_transiently", error=repr(exc))
        return _unavailable(
            "Unavailable", "A dependency of the service failed for a moment; try again."
        )
    log.error("unhandled_error", exc_info=exc)
    return problem(
        500, ErrorCode.INTERNAL_ERROR, "Internal error", "Something went wrong on our side."
    )


class RequestContextMiddleware:
    """X-Request-ID in and out (bound to every log line of the request), the request's span and
    X-Trace-Id (when tracing is on), latency metrics, and the answer to an error no handler of
    the app took (500, or 503 when transient): here, so that it carries the request id and its
    metric counts the status sent, whichever path (fast or FastAPI's) raised it. Starlette would
    render it outside every middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value.decode("latin-1")
        request_id = request_id or uuid.uuid4().hex
        status = 0
        started = time.perf_counter()

        with tracing.server_span(scope) as span:
            trace_id = tracing.current_trace_id()

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                    if trace_id is not None:  # a user's report leads to the trace
                        headers.append((b"x-trace-id", trace_id.encode()))
                    message = {**message, "headers": headers}
                await send(message)

            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if status:  # the answer has begun: nothing else can be sent
                    raise
                response = await _unexpected_error(Request(scope, receive), exc)
                await response(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", "unmatched")
                tracing.finish_server_span(span, scope["method"], template, status or 500)
                if template not in ("/metrics", "/healthz", "/readyz"):
                    HTTP_LATENCY.labels(scope["method"], template, str(status or 500)).observe(
                        time.perf_counter() - started
                    )


class ShopApp(FastAPI):
    """FastAPI whose OpenAPI document lists every answer of every route, with its media type
    (shopkit.http.answers)."""

    service_routes: Sequence[BaseRoute] = ()
    """the routes of the service's routers (FastAPI keeps an included router as one route)"""
    _documented: dict[str, Any] | None = None

    def plain_routes(self) -> list[Route]:
        """Every route of the app, the service's and its own (/healthz, /docs, …)."""
        routes = [*self.router.routes, *self.service_routes]
        return [route for route in routes if isinstance(route, Route)]

    def openapi(self) -> dict[str, Any]:
        document = super().openapi()  # FastAPI's, made again when the routes change
        if document is not self._documented:
            settings: ServiceSettings = self.state.settings
            document_answers(
                document, self.service_routes, enforce_users=settings.auth_enforce_users
            )
            self._documented = document
        return document


def create_app(
    runtime: Runtime,
    *,
    title: str,
    routers: Sequence[APIRouter],
) -> FastAPI:
    """The service's app. Routes marked `@fast` (shopkit.http.fast) get a fast path derived
    from them here, in front of FastAPI's router (`app.state.fast_paths`)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # FastAPI's built-in OpenTelemetry looks up the global providers (environment variables)
    # on every request even when nothing is configured: 8 % of a rejected coupon request's CPU.
    # Off until tracing is configured on purpose.
    app = ShopApp(
        title=title,
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.state.settings = runtime.settings
    fast_paths = app.state.fast_paths = FastPaths()
    app.add_middleware(FastPathMiddleware, paths=fast_paths)
    app.add_middleware(RequestContextMiddleware)  # around the fast paths and FastAPI's
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)
    app.add_exception_handler(Exception, _unexpected_error)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        """Liveness: fails when a part of the process died or its event loop was blocked."""
        try:
            runtime.check_alive()
        except RuntimeError as exc:
            return problem(503, ErrorCode.SERVICE_UNAVAILABLE, "Not alive", str(exc))
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        try:
            await runtime.check_ready()
        except Exception as exc:
            return problem(503, ErrorCode.SERVICE_UNAVAILABLE, "Not ready", str(exc))
        degraded = await runtime.degraded()
        if degraded:
            return JSONResponse({"status": "ready", "degraded": degraded})
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """The whole service's metrics, whichever of its HTTP processes answers."""
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    app.service_routes = [route for router in routers for route in router.routes]
    fast_paths.routes = derive(app.service_routes)
    return app


async def _api_units_of_work(request: Request) -> UnitOfWorkFactory:
    runtime: Runtime = request.app.state.runtime
    return runtime.api_unit_of_work


UnitsOfWork = Annotated[UnitOfWorkFactory, Depends(_api_units_of_work)]
"""The API pool's units of work, for a route to hand to its use case (which opens one:
shopkit.database.uow)."""


def serve(app_factory: str | Callable[[], FastAPI], settings: ServiceSettings) -> None:
    """Serves `package.module:create_app` (or that function, named by its import path) in
    `http_workers` processes sharing the port (the kernel spreads the connections): one runs the
    service's workers too (consumers, outbox relay, sweepers), the others answer HTTP only
    (shopkit.ops.roles)."""
    import uvicorn

    from shopkit.http.server import QuietServer, serve_processes
    from shopkit.ops.logging import configure_logging

    if callable(app_factory):
        app_factory = f"{app_factory.__module__}:{app_factory.__qualname__}"
    options: dict[str, Any] = {
        "host": settings.http_host,
        "port": settings.http_port,
        "factory": True,
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": 30,
        "proxy_headers": True,
    }
    if settings.http_workers > 1:
        configure_logging(settings.service_name, settings.log_level, settings.log_json)
        serve_processes(uvicorn.Config(app_factory, **options), settings.http_workers)
        return
    server = QuietServer(uvicorn.Config(app_factory, **options))
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE
