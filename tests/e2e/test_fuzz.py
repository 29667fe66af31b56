"""Fuzzing every service's HTTP API with schemathesis: requests generated from each service's
OpenAPI document, valid and invalid, sent to the services running as in production (processes,
strong secrets, users confined) and through the gateway. Whatever comes in: no 5xx, every error
is problem+json with a `code`, and every documented answer matches its schema. A bounded number
of examples per operation keeps it inside `make test`."""

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from shopkit.http.auth import mint
from shopkit.testing.processes import System

from .gateway import Gateway, upstreams
from .test_gateway import SERVICES as ROUTED

pytestmark = pytest.mark.e2e

FUZZED = ("point", "product", "coupon", "order")
EXAMPLES = 10
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module", params=FUZZED)
def api(request: pytest.FixtureRequest, system: System) -> Any:
    """One service's OpenAPI document, as it serves it."""
    return schemathesis.openapi.from_url(f"{system.url(request.param)}/openapi.json")


@pytest.fixture(scope="module")
def admin(system: System) -> dict[str, str]:
    """An admin may act for every user: the fuzzer reaches past authorization."""
    return {"Authorization": f"Bearer {mint(system.secrets.jwt, '0', 'admin')}"}


@pytest.fixture(scope="module")
async def fuzz_gateway(
    system: System, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    routes = upstreams(system, ROUTED, absent_port=1)
    async with Gateway(
        tmp_path_factory.mktemp("gateway-fuzz"), routes, jwt_secret=system.secrets.jwt
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def gateway_url(fuzz_gateway: Gateway) -> str:
    return fuzz_gateway.url


def _headers(response: Any) -> dict[str, str]:
    return {k.lower(): v[0] if isinstance(v, list) else v for k, v in response.headers.items()}


def check(case: Any, response: Any) -> None:
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    if response.status_code >= 400:
        assert _headers(response).get("content-type", "").startswith(PROBLEM), (
            case.method,
            case.formatted_path,
            response.status_code,
            response.text[:300],
        )
        body = response.json()
        assert body["status"] == response.status_code
        assert isinstance(body.get("code"), str)


fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def fuzz_every_operation(api: Any, send: Callable[[Any], Any]) -> Counter[int]:
    """Runs up to `EXAMPLES` valid and `EXAMPLES` invalid generated cases of each operation of
    `api` through `send` and the checks; the answers' status codes. (schemathesis's own pytest plugin predates this pytest:
    its strategies are driven with Hypothesis directly.)"""
    statuses: Counter[int] = Counter()
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:  # data the schema allows, and data it does not

            @given(case=operation.as_strategy(mode))
            @fuzz
            def one(case: Any) -> None:
                response = send(case)
                statuses[response.status_code] += 1
                check(case, response)

            try:
                one()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                # nothing about this operation can be invalid (no parameters, no body)
    return statuses


def _exercised(statuses: Counter[int]) -> None:
    """The fuzzer got through (successes) and was refused (errors, all checked above)."""
    assert sum(n for status, n in statuses.items() if status < 300) >= 5, statuses
    assert sum(n for status, n in statuses.items() if 400 <= status < 500) >= 5, statuses


def test_every_service_answers_anything_without_5xx_and_with_problem_json(
    api: Any, admin: dict[str, str]
) -> None:
    _exercised(fuzz_every_operation(api, lambda case: case.call(headers=admin)))


def test_through_the_gateway_too(api: Any, admin: dict[str, str], gateway_url: str) -> None:
    _exercised(
        fuzz_every_operation(api, lambda case: case.call(base_url=gateway_url, headers=admin))
    )
