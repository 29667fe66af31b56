"""Idempotency-Key handling (IETF draft / Stripe semantics), inside the use case's transaction.

The same key and body → the stored first response, replayed; the same key, another body → 422
IDEMPOTENCY_KEY_REUSED; the same key while the first request still runs → 409
IDEMPOTENCY_KEY_IN_USE (a transaction-scoped advisory lock on the key says "running"). The
response is stored in the transaction of the effect, so a crash leaves neither or both.
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Header
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shop_contracts import ErrorCode
from shopkit.database.engine import IdempotencyKey
from shopkit.errors import Conflict, Unprocessable

MAX_KEY_LENGTH = 255
HEADER = "Idempotency-Key"

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="A retry with the same key (per user) and the same body does not act "
        "again: it answers with what the first request did, and header `Idempotent-Replayed: "
        "true`. The same key with another body is a 422 `IDEMPOTENCY_KEY_REUSED`; while the first "
        "request runs, a 409 `IDEMPOTENCY_KEY_IN_USE`. Keys are kept at least 24 hours.",
    ),
]
"""A route's `Idempotency-Key` header parameter (its OpenAPI document then lists the 409 and
the replay header: shopkit.http.answers)."""


class IdempotencyKeyInUse(Conflict):
    """The first request with this Idempotency-Key is still running."""

    code = ErrorCode.IDEMPOTENCY_KEY_IN_USE

    def __init__(self) -> None:
        super().__init__(self.code, "A request with this Idempotency-Key is still running.")


class IdempotencyKeyReused(Unprocessable):
    """This Idempotency-Key came with another body before."""

    code = ErrorCode.IDEMPOTENCY_KEY_REUSED

    def __init__(self) -> None:
        super().__init__(self.code, "This Idempotency-Key was used with another request body.")


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool = False


def request_hash(body: Any) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def once(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    body: Any,
    run: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
) -> Outcome:
    """Run `run()` once per (scope, key); must be called inside an open transaction."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Unprocessable(
            ErrorCode.VALIDATION_ERROR, "Idempotency-Key must be 1..255 characters."
        )
    fingerprint = request_hash(body)
    locked = await session.scalar(
        select(func.pg_try_advisory_xact_lock(func.hashtextextended(f"{scope}|{key}", 0)))
    )
    if not locked:
        raise IdempotencyKeyInUse()
    stored = await session.get(IdempotencyKey, (scope, key))
    if stored is not None:
        if stored.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        return Outcome(stored.status_code, stored.response, replayed=True)
    status_code, response = await run()
    session.add(
        IdempotencyKey(
            scope=scope,
            key=key,
            request_hash=fingerprint,
            status_code=status_code,
            response=response,
        )
    )
    return Outcome(status_code, response)


async def purge_expired(session: AsyncSession, older_than_hours: int = 48) -> None:
    await session.execute(
        text("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => :h)"),
        {"h": older_than_hours},
    )
