"""A service's OpenAPI document lists every answer of each route with its media type: the
errors derived from what the route is made of, and the route's own (shopkit.http.answers)."""

from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from shop_contracts import ErrorCode
from shopkit.errors import Conflict, NotFound
from shopkit.http.answers import raises
from shopkit.http.app import MAX_ID, IdPath, StrictId, create_app
from shopkit.http.auth import AdminClaims, OptionalClaims, authorize_user
from shopkit.http.idempotency import IdempotencyKeyHeader
from shopkit.ops.runtime import Runtime
from shopkit.settings import ServiceSettings

PROBLEM = "application/problem+json"


class ThingNotFound(NotFound):
    """There is no such thing."""

    code = ErrorCode.PRODUCT_NOT_FOUND

    def __init__(self) -> None:
        super().__init__(self.code, "No such thing.")


class ThingTaken(Conflict):
    """Someone has the thing."""

    code = ErrorCode.COUPON_SOLD_OUT


class NewThing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_id: StrictId
    weight: Annotated[int, Field(strict=True, ge=0, le=MAX_ID)]


class Thing(BaseModel):
    id: int


router = APIRouter()


@router.get("/things", response_model=list[Thing])
async def list_things() -> list[Thing]:
    return []


@router.get("/things/{thing_id}", response_model=Thing, responses=raises(ThingNotFound))
async def get_thing(thing_id: IdPath) -> Thing:
    raise ThingNotFound()


@router.post("/things", response_model=Thing, status_code=201)
async def add_thing(body: NewThing, _: AdminClaims) -> Thing:
    return Thing(id=1)


@router.post(
    "/users/{user_id}/things", response_model=Thing, responses=raises(ThingNotFound, ThingTaken)
)
async def take_thing(
    request: Request,
    user_id: IdPath,
    claims: OptionalClaims,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Thing:
    authorize_user(request, claims, user_id)
    return Thing(id=1)


def document(**settings: Any) -> dict[str, Any]:
    config = ServiceSettings(local_mode=True, **settings)
    return create_app(Runtime(config), title="t", routers=[router]).openapi()


def operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["paths"][path][method]
    return found


def problem_codes(response: dict[str, Any]) -> list[str]:
    (media_type,) = response["content"]
    assert media_type == PROBLEM
    ref, own = response["content"][PROBLEM]["schema"]["allOf"]
    assert ref == {"$ref": "#/components/schemas/Problem"}
    codes: list[str] = own["properties"]["code"]["enum"]
    return codes


def errors_of(op: dict[str, Any]) -> dict[int, list[str]]:
    return {
        int(status): problem_codes(response)
        for status, response in op["responses"].items()
        if int(status) >= 400
    }


def test_every_route_may_be_refused_by_the_gateway_or_be_unavailable() -> None:
    doc = document()
    assert errors_of(operation(doc, "get", "/things")) == {
        413: ["PAYLOAD_TOO_LARGE"],  # the gateway's limit, a body where none is expected too
        429: ["RATE_LIMITED"],
        503: ["SERVICE_UNAVAILABLE"],
    }
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            for status in ("429", "503"):
                headers = op["responses"][status]["headers"]
                assert headers["Retry-After"]["required"] is True, (method, path)


def test_a_path_parameter_brings_422_and_404_and_the_routes_own_error() -> None:
    errors = errors_of(operation(document(), "get", "/things/{thing_id}"))
    assert errors == {
        404: ["NOT_FOUND", "PRODUCT_NOT_FOUND"],
        413: ["PAYLOAD_TOO_LARGE"],
        422: ["VALIDATION_ERROR"],
        429: ["RATE_LIMITED"],
        503: ["SERVICE_UNAVAILABLE"],
    }


def test_an_admin_route_needs_the_bearer_token_and_may_be_refused() -> None:
    doc = document()
    op = operation(doc, "post", "/things")
    assert op["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    errors = errors_of(op)
    assert errors[401] == ["UNAUTHENTICATED"]
    assert errors[403] == ["FORBIDDEN"]
    assert op["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert "security" not in operation(doc, "get", "/things/{thing_id}")


def test_an_idempotent_user_route_lists_the_key_errors_and_the_replay_header() -> None:
    op = operation(document(), "post", "/users/{user_id}/things")
    errors = errors_of(op)
    assert errors[409] == ["IDEMPOTENCY_KEY_IN_USE", "COUPON_SOLD_OUT"]
    assert errors[422] == ["VALIDATION_ERROR", "IDEMPOTENCY_KEY_REUSED"]
    assert errors[404] == ["NOT_FOUND", "PRODUCT_NOT_FOUND"]
    assert "Idempotent-Replayed" in op["responses"]["200"]["headers"]
    (key,) = [p for p in op["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["schema"]["anyOf"][0] == {"type": "string", "minLength": 1, "maxLength": 255}


def test_user_routes_document_auth_as_optional_only_when_it_is_not_enforced() -> None:
    path = "/users/{user_id}/things"
    assert operation(document(), "post", path)["security"] == [{"bearer": []}]
    relaxed = document(auth_enforce_users=False)
    assert operation(relaxed, "post", path)["security"] == [{}, {"bearer": []}]
    assert operation(relaxed, "post", "/things")["security"] == [{"bearer": []}]  # admin


def test_no_error_is_documented_as_plain_json_and_fastapis_422_model_is_gone() -> None:
    doc = document()
    for methods in doc["paths"].values():
        for op in methods.values():
            for status, response in op["responses"].items():
                media_types = set(response.get("content", {}))
                assert media_types <= ({PROBLEM} if int(status) >= 400 else {"application/json"})
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}


def test_int64_bounds_are_written_exactly() -> None:
    doc = document()
    new_thing = doc["components"]["schemas"]["NewThing"]["properties"]
    assert new_thing["owner_id"]["maximum"] == 2**63 - 1
    assert isinstance(new_thing["weight"]["minimum"], int)
    (thing_id,) = operation(doc, "get", "/things/{thing_id}")["parameters"]
    assert thing_id["schema"]["maximum"] == 2**63 - 1


def test_an_error_without_a_code_of_its_own_cannot_be_listed() -> None:
    with pytest.raises(TypeError, match="names no code"):
        raises(Conflict)
