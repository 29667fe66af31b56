"""A route marked `@fast` gets a fast path derived from it: it answers the plain requests itself
and hands everything else, body included, to the FastAPI route, so a client cannot tell which
one answered: same bodies, same problem+json errors, same request ids and metrics."""

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client import REGISTRY
from pydantic import BaseModel, ConfigDict

from shop_contracts import ErrorCode
from shopkit.errors import Conflict
from shopkit.http.app import IdPath, StrictId, create_app
from shopkit.http.auth import OptionalClaims, authorize_user, mint
from shopkit.http.fast import FAST_PATH, FastPaths, derive, fast
from shopkit.ops.runtime import Runtime
from shopkit.settings import LOCAL_JWT_SECRET, ServiceSettings
from shopkit.testing import running_server
from shopkit.testing.fast_paths import Endpoint, assert_paths_agree

answered: Counter[str] = Counter()


class Poke(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictId


class Poked(BaseModel):
    thing_id: int
    user_id: int


class ThingTaken(Conflict):
    def __init__(self, thing_id: int) -> None:
        super().__init__(ErrorCode.COUPON_SOLD_OUT, f"Thing {thing_id} is taken.")


def poke_thing(thing_id: int, user_id: int) -> Poked:
    if thing_id == 13:
        raise ThingTaken(thing_id)
    return Poked(thing_id=thing_id, user_id=user_id)


router = APIRouter()


@router.get("/things/{thing_id}/poke", response_model=Poked)
async def last_poke(thing_id: IdPath) -> Poked:
    return Poked(thing_id=thing_id, user_id=1)


@router.post("/things/{thing_id}/poke", status_code=201, response_model=Poked)
@fast
async def poke(thing_id: IdPath, body: Poke, claims: OptionalClaims, request: Request) -> Poked:
    authorize_user(request, claims, body.user_id)
    answered["fast" if request.scope.get(FAST_PATH) else "fastapi"] += 1
    if thing_id == 666:
        raise RuntimeError("a bug of ours")
    return poke_thing(thing_id, body.user_id)


@pytest.fixture
async def served(settings: ServiceSettings) -> AsyncIterator[tuple[FastAPI, str]]:
    config = settings.model_copy(update={"run_workers": False, "local_mode": True})
    app = create_app(Runtime(config), title="t", routers=[router])
    answered.clear()
    async with running_server(app) as url:
        yield app, url


@pytest.fixture
async def http(served: tuple[FastAPI, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served[1]) as client:
        client.headers["Authorization"] = f"Bearer {mint(LOCAL_JWT_SECRET, '7', 'user')}"
        yield client


def _poke_latency_count(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "http_request_duration_seconds_count",
        {"method": "POST", "route": "/things/{thing_id}/poke", "status": status},
    )
    return value or 0.0


async def test_a_plain_request_is_answered_by_the_fast_path(http: httpx.AsyncClient) -> None:
    before = _poke_latency_count("201")
    answer = await http.post("/things/5/poke", json={"user_id": 7}, headers={"X-Request-ID": "r1"})
    assert answer.status_code == 201
    assert answer.json() == {"thing_id": 5, "user_id": 7}
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"] == "r1"
    assert answered == {"fast": 1}
    assert _poke_latency_count("201") == before + 1  # labelled with the route's template


async def test_a_domain_error_is_the_apps_problem_answer(http: httpx.AsyncClient) -> None:
    answer = await http.post("/things/13/poke", json={"user_id": 7})
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "COUPON_SOLD_OUT"
    assert answer.json()["detail"] == "Thing 13 is taken."
    assert answered == {"fast": 1}


async def test_an_auth_error_is_the_same_as_fastapis(http: httpx.AsyncClient) -> None:
    other_user = await http.post("/things/5/poke", json={"user_id": 8})
    assert other_user.status_code == 403
    assert other_user.json()["code"] == "FORBIDDEN"
    bad_token = await http.post(
        "/things/5/poke", json={"user_id": 7}, headers={"Authorization": "Bearer nope"}
    )
    assert bad_token.status_code == 401
    assert bad_token.headers["www-authenticate"] == 'Bearer realm="shop"'
    assert answered == {}  # refused before the route did anything


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        pytest.param(b'{"user_id": "7"}', {}, id="a string id"),
        pytest.param(b'{"user_id": 7, "more": 1}', {}, id="an extra field"),
        pytest.param(b'{"user_id": 0}', {}, id="id 0"),
        pytest.param(b"{", {}, id="broken JSON"),
        pytest.param(b'{"user_id": 7\xff}', {}, id="not UTF-8"),
        pytest.param(b"", {}, id="no body"),
    ],
)
async def test_a_body_the_model_refuses_gets_fastapis_422(
    http: httpx.AsyncClient, content: bytes, headers: dict[str, str]
) -> None:
    answer = await http.post(
        "/things/5/poke", content=content, headers={"Content-Type": "application/json", **headers}
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "VALIDATION_ERROR"
    assert answered == {}


async def test_another_content_type_goes_on_to_fastapi_with_its_body(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.post(
        "/things/5/poke", content=b'{"user_id": 7}', headers={"Content-Type": "text/plain"}
    )
    # FastAPI reads the replayed body: it refuses it as not JSON, as it always has.
    assert answer.status_code == 422
    assert answered == {}
    with_charset = await http.post(
        "/things/5/poke",
        content=b'{"user_id": 7}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert with_charset.status_code == 201
    assert answered == {"fast": 1}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/things/0/poke", 422),
        ("/things/9223372036854775808/poke", 422),  # 2**63
        ("/things/5/poke/", 307),  # redirected to the path without the slash
        ("/things/x/poke", 422),
    ],
)
async def test_paths_the_fast_path_does_not_take_go_on_to_fastapi(
    http: httpx.AsyncClient, path: str, status: int
) -> None:
    answer = await http.post(path, json={"user_id": 7}, follow_redirects=False)
    assert answer.status_code == status
    assert "fast" not in answered


async def test_an_id_is_read_as_fastapi_reads_it(http: httpx.AsyncClient) -> None:
    answer = await http.post("/things/007/poke", json={"user_id": 7})
    assert answer.status_code == 201
    assert answer.json()["thing_id"] == 7
    assert answered == {"fast": 1}


async def test_the_largest_id_is_the_fast_paths(http: httpx.AsyncClient) -> None:
    answer = await http.post("/things/9223372036854775807/poke", json={"user_id": 7})
    assert answer.status_code == 201
    assert answer.json()["thing_id"] == 2**63 - 1
    assert answered == {"fast": 1}


async def test_the_fast_path_answers_every_probe_as_fastapi_does(
    served: tuple[FastAPI, str],
) -> None:
    app, url = served
    endpoint = Endpoint(
        "/things/{thing_id}/poke",
        "POST",
        lambda user: ("/things/5/poke", {"user_id": user}),
        volatile=frozenset({"user_id"}),
    )
    await assert_paths_agree(app, url, [endpoint])
    assert answered["fast"] >= 1
    assert answered["fastapi"] >= 1


async def _on_both_paths(
    app: FastAPI, http: httpx.AsyncClient, method: str, path: str, **kwargs: Any
) -> list[httpx.Response]:
    answers = []
    for enabled in (True, False):
        app.state.fast_paths.enabled = enabled
        answers.append(await http.request(method, path, **kwargs))
    app.state.fast_paths.enabled = True
    return answers


@pytest.mark.parametrize(
    ("user_id", "status"),
    [
        pytest.param(7.0, 201, id="7.0"),
        pytest.param(7, 201, id="7"),
        pytest.param(True, 422, id="true"),
        pytest.param(7.5, 422, id="a fraction"),
        pytest.param(-7.0, 422, id="out of range"),
        pytest.param(1e300, 422, id="1e300"),
        # 9007199254740993.0 reads as this float too: past 2**53 - 1 a float is not one integer
        pytest.param(2.0**53, 422, id="2**53"),
        pytest.param(2.0**53 - 1, 403, id="2**53 - 1, not the token's user"),
    ],
)
async def test_an_integer_written_as_a_whole_float_is_read_alike_on_both_paths(
    served: tuple[FastAPI, str], http: httpx.AsyncClient, user_id: Any, status: int
) -> None:
    """JSON Schema's integer is any number without a fraction: `7.0` is 7, taken by the fast
    path itself, and by FastAPI's route the same way; a bool, a fraction, a number past the
    bounds or too large to be exact as a float are not."""
    app, _ = served
    content = json.dumps({"user_id": user_id})
    fast_answer, fastapi_answer = await _on_both_paths(
        app,
        http,
        "POST",
        "/things/5/poke",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert fast_answer.status_code == fastapi_answer.status_code == status
    assert fast_answer.json() == fastapi_answer.json()
    if status == 201:
        assert fast_answer.json() == {"thing_id": 5, "user_id": 7}
        assert answered == {"fast": 1, "fastapi": 1}
    else:
        assert "fast" not in answered


@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS", "PATCH"])
async def test_a_method_the_path_lacks_is_a_405_that_names_every_method_it_has(
    served: tuple[FastAPI, str], http: httpx.AsyncClient, method: str
) -> None:
    """RFC 9110: `Allow` lists the methods of the resource, all its routes' (Starlette names the
    first route's only), on the fast path's paths as on the others."""
    app, _ = served
    answers = await _on_both_paths(app, http, method, "/things/5/poke")
    for answer in answers:
        assert answer.status_code == 405
        assert answer.headers["allow"] == "GET, POST"
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "METHOD_NOT_ALLOWED"
    assert answers[0].json() == answers[1].json()


async def test_a_bug_is_a_500_with_the_request_id_on_both_paths(
    served: tuple[FastAPI, str], http: httpx.AsyncClient
) -> None:
    app, _ = served
    answers = []
    for enabled in (True, False):
        app.state.fast_paths.enabled = enabled
        before = _poke_latency_count("500")
        answer = await http.post(
            "/things/666/poke", json={"user_id": 7}, headers={"X-Request-ID": "bug"}
        )
        assert _poke_latency_count("500") == before + 1  # the status sent, on its route
        answers.append((answer.status_code, answer.headers.get("x-request-id"), answer.json()))
    assert answers[0] == answers[1] == (500, "bug", answers[0][2])
    assert answers[0][2]["code"] == "INTERNAL_ERROR"
    assert answered == {"fast": 1, "fastapi": 1}


async def _needs_a_session() -> AsyncIterator[int]:
    yield 1


def test_a_route_whose_fast_path_cannot_be_derived_stops_the_start() -> None:
    broken = APIRouter()

    @broken.get("/broken", response_model=Poked)
    @fast
    async def uses_a_generator(db: int = Depends(_needs_a_session)) -> Poked:
        return Poked(thing_id=db, user_id=db)

    with pytest.raises(TypeError, match="async def"):
        derive(broken.routes)


def test_only_marked_routes_get_a_fast_path() -> None:
    mixed = APIRouter()

    @mixed.get("/plain", response_model=Poked)
    async def plain() -> Poked:
        return Poked(thing_id=1, user_id=1)

    @mixed.get("/marked/{thing_id}", response_model=Poked)
    @fast
    async def marked(thing_id: IdPath) -> Poked:
        return Poked(thing_id=thing_id, user_id=1)

    assert [r.route.path for r in FastPaths(derive(mixed.routes)).routes] == ["/marked/{thing_id}"]
