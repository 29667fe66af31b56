"""Invariant checks after a scenario: what the answers said against what the databases hold.

wrk stops at the end of its duration without waiting for the requests in flight: up to one
per connection may have been handled by the service without wrk counting the answer. Checks
that compare answers with rows allow exactly that much (and say so); checks between rows
(money, stock, coupons) are exact."""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import asyncpg

from benchmarks.wrk import WrkResult


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def answers(result: WrkResult, allowed: Iterable[str]) -> Check:
    """Every answer has an allowed status (with its problem code: "409 COUPON_SOLD_OUT"), and
    no request failed at the socket level (connect, read, write, timeout)."""
    allowed = set(allowed)
    unexpected = {k: n for k, n in result.statuses.items() if k not in allowed}
    errors = {k: n for k, n in result.errors.items() if k != "status" and n}
    ok = not unexpected and not errors and result.requests > 0
    detail = f"{result.statuses}"
    if unexpected:
        detail += f"; unexpected {unexpected}"
    if errors:
        detail += f"; socket errors {errors}"
    if result.requests == 0:
        detail += "; no answer at all"
    return Check("answers", ok, detail)


def rows_match_answers(name: str, rows: int, answered: int, in_flight: int) -> Check:
    """`rows` written by the service vs `answered` successes wrk saw (+ at most `in_flight`)."""
    ok = answered <= rows <= answered + in_flight
    extra = rows - answered
    detail = f"{rows} rows for {answered} success answers"
    if extra:
        detail += f" (+{extra} answered after wrk stopped; at most {in_flight} may be)"
    return Check(name, ok, detail)


def equal(name: str, actual: int, expected: int, what: str = "") -> Check:
    detail = f"{actual} == {expected}" if actual == expected else f"{actual} != {expected}"
    return Check(name, actual == expected, f"{detail} {what}".strip())


async def settle(
    read: Callable[[], Awaitable[int]], *, quiet_s: float = 1.0, timeout_s: float = 30.0
) -> int:
    """Reads a count until it stops changing for `quiet_s` (requests still being handled when
    wrk stopped), at most `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    value = await read()
    stable_since = loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.25)
        new = await read()
        if new != value:
            value, stable_since = new, loop.time()
        elif loop.time() - stable_since >= quiet_s:
            break
    return value


class Databases:
    """One connection per database the checks read, opened before any measurement."""

    def __init__(self, connections: dict[str, asyncpg.Connection]) -> None:
        self.c = connections

    @classmethod
    async def open(cls, dsns: dict[str, str], names: Iterable[str]) -> "Databases":
        return cls({name: await asyncpg.connect(dsns[name]) for name in names})

    async def close(self) -> None:
        for connection in self.c.values():
            await connection.close()

    async def user_coupons(self, coupon_id: int) -> tuple[int, int, float]:
        """(rows, distinct users, seconds from the first issue to the last)."""
        row = await self.c["coupon"].fetchrow(
            "SELECT count(*) AS n, count(DISTINCT user_id) AS users,"
            " coalesce(extract(epoch FROM max(issued_at) - min(issued_at)), 0) AS span"
            " FROM user_coupons WHERE coupon_id = $1",
            coupon_id,
        )
        assert row is not None
        return int(row["n"]), int(row["users"]), float(row["span"])

    async def reference_issues(self, coupon_id: int) -> int:
        n = await self.c["reference"].fetchval(
            "SELECT count(*) FROM bench_ref_issues WHERE coupon_id = $1", coupon_id
        )
        return int(n)

    async def ledger(self, first_user: int, last_user: int) -> tuple[int, int]:
        """(ledger rows, their amounts) of the users in [first_user, last_user]."""
        return await self._users_rows("ledger", "amount", first_user, last_user)

    async def balances(self, first_user: int, last_user: int) -> tuple[int, int]:
        """(balance rows, their sum) of the users in [first_user, last_user]."""
        return await self._users_rows("balances", "balance", first_user, last_user)

    async def _users_rows(
        self, table: str, column: str, first_user: int, last_user: int
    ) -> tuple[int, int]:
        """(rows, the sum of `column`) of the point database's `table` for the users in
        [first_user, last_user]."""
        row = await self.c["point"].fetchrow(
            f"SELECT count(*) AS n, coalesce(sum({column}), 0) AS total FROM {table}"
            " WHERE user_id BETWEEN $1 AND $2",
            first_user,
            last_user,
        )
        assert row is not None
        return int(row["n"]), int(row["total"])
