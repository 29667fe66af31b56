"""Checking an error answer: every service, and the gateway, answers an error as problem+json
(RFC 9457) with the status and a `code` of API.md."""

from typing import Any

import httpx

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """`response` is a problem+json answer of `status` with `code`; its body, for more checks."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    return problem
