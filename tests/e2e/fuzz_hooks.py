"""What the contract fuzzing (test_fuzz.py) adds to schemathesis, loaded by `hooks` in
schemathesis.toml: two rules of the API that no JSON Schema can state, so that a case the schema
allows is a case the API must take, and two checks of our own.

The rules, applied to the cases generated as valid only (an invalid case keeps what makes it so):
- an `Idempotency-Key` is a new one: the same key with another body is refused by design
  (422 `IDEMPOTENCY_KEY_REUSED`), and a generator draws the same short keys again and again;
- the lines of an order name distinct products (422 otherwise, API.md): JSON Schema has no
  "unique by property" for the items of an array.

The checks:
- `problem_details`: every error answer, undocumented ones included (a 405 to a method the
  schema does not list, the gateway's own), is problem+json whose `status` is the answer's and
  which has a `code`;
- `Exercised`: the run got through (at least a few 2xx) and was refused (a few 4xx), so a
  document whose every request fails cannot pass unnoticed.
"""

import uuid
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, GenerationMode, HookContext, Response

PROBLEM = "application/problem+json"
IDEMPOTENCY_KEY = "Idempotency-Key"
MAX_KEY_LENGTH = 255
UNIQUE_SUFFIX_LENGTH = 33  # "-" and 32 hex digits
AT_LEAST = 5


@schemathesis.hook
def map_case(context: HookContext, case: Case[Any]) -> Case[Any]:
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return case
    _fresh_idempotency_key(case)
    _distinct_products(case)
    return case


def _fresh_idempotency_key(case: Case[Any]) -> None:
    headers = case.headers
    key = headers.get(IDEMPOTENCY_KEY) if headers else None
    if isinstance(key, str) and headers is not None:
        prefix = key[: MAX_KEY_LENGTH - UNIQUE_SUFFIX_LENGTH]
        headers[IDEMPOTENCY_KEY] = f"{prefix}-{uuid.uuid4().hex}"


def _distinct_products(case: Case[Any]) -> None:
    body = case.body
    if case.operation.path != "/orders" or not isinstance(body, dict):
        return
    items = body.get("items")
    if not isinstance(items, list):
        return
    seen: set[Any] = set()
    distinct = []
    for item in items:
        product = item.get("product_id") if isinstance(item, dict) else object()
        if product not in seen:
            seen.add(product)
            distinct.append(item)
    body["items"] = distinct


@schemathesis.check
def problem_details(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    if response.status_code < 400:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith(PROBLEM), f"{response.status_code} sent as {content_type!r}"
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("status") == response.status_code, body
    assert isinstance(body.get("code"), str), body
    return None


@schemathesis.check
class Exercised:
    """The run's answers had successes and refusals (each at least AT_LEAST)."""

    def __init__(self) -> None:
        self.successes: set[str] = set()
        self.refusals: set[str] = set()

    def after_response(self, ctx: CheckContext, response: Response, case: Case[Any]) -> None:
        # Sets of case ids: a case may be checked again when it is shrunk or replayed.
        if 200 <= response.status_code < 300:
            self.successes.add(case.id)
        elif 400 <= response.status_code < 500:
            self.refusals.add(case.id)

    def after_run(self, ctx: CheckContext) -> None:
        assert len(self.successes) >= AT_LEAST, f"{len(self.successes)} successes"
        assert len(self.refusals) >= AT_LEAST, f"{len(self.refusals)} refusals"
