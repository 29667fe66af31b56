"""Idempotency-Key handling (IETF draft / Stripe semantics), inside the use case's transaction.

The same key and body → the stored first response, replayed; the same key, another body → 422
IDEMPOTENCY_KEY_REUSED; the same key while the first request still runs → 409
IDEMPOTENCY_KEY_IN_USE (a transaction-scoped advisory lock on the key says "running"). The
response is stored in the transaction of the effect, so a crash leaves neither or both.
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shop_contracts import ErrorCode
from shopkit.database.engine import IdempotencyKey
from shopkit.errors import Conflict, Unprocessable

MAX_KEY_LENGTH = 255


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
        raise Conflict(
            ErrorCode.IDEMPOTENCY_KEY_IN_USE,
            "A request with this Idempotency-Key is still running.",
        )
    stored = await session.get(IdempotencyKey, (scope, key))
    if stored is not None:
        if stored.request_hash != fingerprint:
            raise Unprocessable(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "This Idempotency-Key was used with another request body.",
            )
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
