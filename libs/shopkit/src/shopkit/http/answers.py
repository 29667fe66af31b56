"""Every answer a route can give, in its service's OpenAPI document, with its media type.

Contract tests and generated clients read the documents (API.md: "every answer a service sends
is in its OpenAPI document"). FastAPI documents a route's success and a 422 of its own shape as
`application/json`; every error we send is `application/problem+json` (shopkit.http.app), and
most of them come from what the route is made of rather than from its own code. So, in this one
place, each route's error answers are derived from its definition and written over FastAPI's:

- parameters or a body → 422 `VALIDATION_ERROR`; a path parameter → 404 `NOT_FOUND` too (a value
  that is not one path segment matches no route);
- a token dependency (`OptionalClaims`, `AdminClaims`: shopkit.http.auth) → 401 with
  `WWW-Authenticate`, 403, and the bearer security requirement (optional on user routes when
  AUTH_ENFORCE_USERS is off);
- an `Idempotency-Key` header (shopkit.http.idempotency) → 409 `IDEMPOTENCY_KEY_IN_USE`, 422
  `IDEMPOTENCY_KEY_REUSED`, and `Idempotent-Replayed` on the successes;
- every route → 413 `PAYLOAD_TOO_LARGE` (the gateway's body limit of the route: even one that
  takes no body refuses a large one), 429 `RATE_LIMITED` (the gateway's per-user rates and
  in-flight caps) and 503 `SERVICE_UNAVAILABLE` (a dependency away, the pool saturated), both
  with `Retry-After`;
- the route's own domain errors, listed in its decorator: `responses=raises(CouponSoldOut, …)`.

Each error answer names the codes it may carry (an `enum` on `code`), so the fuzzing in
tests/e2e/test_fuzz.py checks the codes too.
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from shop_contracts import INT64_MAX, PROBLEM_MEDIA_TYPE, ErrorCode, Problem
from shopkit.errors import DomainError
from shopkit.http import auth, idempotency

SCHEMAS: Final = "#/components/schemas/"
BEARER: Final = "bearer"
_OWN: Final = "x-shop-problems"
"""the key under which `raises()` hands a route's own errors to `document_answers()`"""

_RETRY_AFTER: Final = {
    "description": "Seconds to wait before sending the same request again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
_WWW_AUTHENTICATE: Final = {
    "description": 'The scheme to authenticate with: `Bearer realm="shop"` (RFC 6750).',
    "required": True,
    "schema": {"type": "string"},
}
_REPLAYED: Final = {
    "description": "`true` when this is the stored answer to an earlier request with the same "
    "Idempotency-Key and body (nothing was done again).",
    "schema": {"type": "string", "enum": ["true"]},
}


@dataclass(frozen=True)
class ErrorAnswer:
    """One error answer: its status, its code, why, and the headers it always carries."""

    status: int
    code: ErrorCode
    why: str
    headers: tuple[tuple[str, dict[str, Any]], ...] = ()


VALIDATION: Final = ErrorAnswer(
    422,
    ErrorCode.VALIDATION_ERROR,
    "A parameter or the body is not as documented (malformed JSON, a wrong type, a missing, "
    "extra or out-of-range field); `errors` lists them.",
)
NO_SUCH_PATH: Final = ErrorAnswer(
    404, ErrorCode.NOT_FOUND, "A path parameter that is not one path segment matches no route."
)
TOO_LARGE: Final = ErrorAnswer(
    413,
    ErrorCode.PAYLOAD_TOO_LARGE,
    "The body is past the gateway's limit for the route (16 KiB for an order, 4 KiB for the other "
    "bodies, 1 KiB where none is expected).",
)
UNAUTHENTICATED: Final = ErrorAnswer(
    401,
    ErrorCode.UNAUTHENTICATED,
    "No bearer token, or a malformed, expired or wrongly signed one.",
    (("WWW-Authenticate", _WWW_AUTHENTICATE),),
)
FORBIDDEN: Final = ErrorAnswer(
    403, ErrorCode.FORBIDDEN, "The token may not do this (not an admin's, or another user's)."
)
RATE_LIMITED: Final = ErrorAnswer(
    429,
    ErrorCode.RATE_LIMITED,
    "Past the gateway's limits: the user's rate of writes, or the route's requests in flight.",
    (("Retry-After", _RETRY_AFTER),),
)
UNAVAILABLE: Final = ErrorAnswer(
    503,
    ErrorCode.SERVICE_UNAVAILABLE,
    "A dependency (database, Kafka, Redis) is away for a moment, or the service is saturated: "
    "nothing was done.",
    (("Retry-After", _RETRY_AFTER),),
)
_EVERY_ROUTE: Final = (TOO_LARGE, RATE_LIMITED, UNAVAILABLE)


def raises(*errors: type[DomainError]) -> dict[int | str, dict[str, Any]]:
    """A route's own errors, for its decorator's `responses=`: each class names its status and
    its code (`code = ErrorCode.…` on the class)."""
    own: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        code = getattr(error, "code", None)
        if not isinstance(code, ErrorCode):
            raise TypeError(f"{error.__name__} names no code of its own (code = ErrorCode.…)")
        entry = own.setdefault(error.status, {"description": HTTPStatus(error.status).phrase})
        entry.setdefault(_OWN, {})[code.value] = _why(error)
    return own


def _why(error: type[DomainError]) -> str:
    """The first line of the error's docstring."""
    return (error.__doc__ or "").strip().split("\n")[0]


def document_answers(
    document: dict[str, Any], routes: Iterable[Any], *, enforce_users: bool
) -> None:
    """Writes every documented route's error answers into `document` (FastAPI's, in place)."""
    _exact_bounds(document)
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template=SCHEMAS + "{model}", mode="serialization")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    secured = False
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        calls = set(_calls(route.dependant))
        for method in route.methods or ():
            operation = document["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            _document_route(operation, route, calls)
            if auth.require_admin in calls or auth.optional_claims in calls:
                secured = True
                required = enforce_users or auth.require_admin in calls
                operation["security"] = [{BEARER: []}] if required else [{}, {BEARER: []}]
    if secured:
        components.setdefault("securitySchemes", {})[BEARER] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "HS256, claims `sub` (the user id), `role` (`user` or `admin`), `exp`.",
        }
    _drop_unused(document, ("HTTPValidationError", "ValidationError"))


def _document_route(operation: dict[str, Any], route: APIRoute, calls: set[Any]) -> None:
    problems = list(_derived(route, calls))
    for status, entry in route.responses.items():
        for code, why in entry.get(_OWN, {}).items():
            problems.append(ErrorAnswer(int(status), ErrorCode(code), why))
    by_status: dict[int, list[ErrorAnswer]] = defaultdict(list)
    for p in problems:
        if p not in by_status[p.status]:
            by_status[p.status].append(p)
    responses = operation.setdefault("responses", {})
    for status in list(responses):
        if status.isdigit() and int(status) >= 400:
            del responses[status]  # FastAPI's, as application/json: ours replace them
    for status in sorted(by_status):
        responses[str(status)] = _rendered(status, by_status[status])
    if _idempotent(route):
        for status, response in responses.items():
            if status.startswith("2"):
                response.setdefault("headers", {})["Idempotent-Replayed"] = _REPLAYED


def _derived(route: APIRoute, calls: set[Any]) -> Iterable[ErrorAnswer]:
    dependant = route.dependant
    flat = list(_dependants(dependant))
    if any(d.path_params or d.query_params or d.header_params or d.body_params for d in flat):
        yield VALIDATION
    if any(d.path_params for d in flat):
        yield NO_SUCH_PATH
    if auth.require_admin in calls or auth.optional_claims in calls:
        yield UNAUTHENTICATED
        yield FORBIDDEN
    if _idempotent(route):
        for error in (idempotency.IdempotencyKeyInUse, idempotency.IdempotencyKeyReused):
            yield ErrorAnswer(error.status, error.code, _why(error))
    yield from _EVERY_ROUTE


def _rendered(status: int, problems: Sequence[ErrorAnswer]) -> dict[str, Any]:
    codes = list(dict.fromkeys(p.code.value for p in problems))
    headers: dict[str, Any] = {}
    for p in problems:
        headers.update(p.headers)
    lines = [f"- `{p.code.value}`" + (f": {p.why}" if p.why else "") for p in problems]
    rendered: dict[str, Any] = {
        "description": "\n".join([HTTPStatus(status).phrase + ", as problem+json:", *lines]),
        "content": {
            PROBLEM_MEDIA_TYPE: {
                "schema": {
                    "allOf": [
                        {"$ref": SCHEMAS + "Problem"},
                        {"properties": {"code": {"enum": codes}, "status": {"const": status}}},
                    ]
                }
            }
        },
    }
    if headers:
        rendered["headers"] = headers
    return rendered


def _dependants(dependant: Dependant) -> Iterable[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def _calls(dependant: Dependant) -> Iterable[Any]:
    for d in _dependants(dependant):
        if d.call is not None:
            yield d.call


def _idempotent(route: APIRoute) -> bool:
    return any(
        getattr(param, "alias", "").lower() == idempotency.HEADER.lower()
        for d in _dependants(route.dependant)
        for param in d.header_params
    )


_BOUNDS: Final = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_EXACT_FLOAT: Final = 2**53
_INT64: Final = {float(INT64_MAX): INT64_MAX, float(-INT64_MAX - 1): -INT64_MAX - 1}


def _exact_bounds(node: Any) -> None:
    """FastAPI's OpenAPI model holds bounds as floats: 2^63 − 1 comes out as 2^63, one more
    than an id may be. Whole bounds are written back as ints; past 2^53 only the int64 limits
    are known, and any other is refused rather than written wrong."""
    if isinstance(node, list):
        for item in node:
            _exact_bounds(item)
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in _BOUNDS and isinstance(value, float) and value.is_integer():
            if abs(value) < _EXACT_FLOAT:
                node[key] = int(value)
            elif value in _INT64:
                node[key] = _INT64[value]
            else:
                raise ValueError(f"{key} {value} cannot be written exactly in the document")
        else:
            _exact_bounds(value)


def _drop_unused(document: dict[str, Any], names: Iterable[str]) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    for name in names:
        if name in schemas:
            others = {k: v for k, v in schemas.items() if k != name}
            text = json.dumps({**document, "components": {"schemas": others}})
            if f'"{SCHEMAS}{name}"' not in text:
                del schemas[name]
