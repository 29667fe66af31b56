"""The Redis admission gate in front of a coupon rush.

Per coupon, two keys in one Redis Cluster hash slot (the coupon id is the hash tag):
`<prefix>:{<id>}:meta`, a hash with `total` (copies) and `count` (admitted users), and
`<prefix>:{<id>}:issued`, the set of admitted users. One Lua script decides each request
atomically: already admitted, sold out, or admitted now. The gate is only a filter: PostgreSQL
holds the truth and guards it again, so the gate may admit too many but never lets the database
go wrong.

A gate is *intact* when `meta` exists and its `count` equals the size of `issued`: a flush,
restart or eviction of either key makes it not intact, and every script then refuses to admit
(`NEEDS_REBUILD`) until the gate is installed again from PostgreSQL. Installing writes only when
the gate is still not intact, so concurrent rebuilds cannot overwrite a gate already in use.
"""

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from enum import StrEnum
from itertools import islice
from typing import Any, Final, Self
from uuid import uuid4

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from coupon.config import Settings
from shopkit.ops import tracing

_STATE: Final = """
local meta, issued = KEYS[1], KEYS[2]
local state = redis.call('HMGET', meta, 'total', 'count')
local total, count = tonumber(state[1]), tonumber(state[2])
local intact = total ~= nil and count ~= nil and count == redis.call('SCARD', issued)
"""

ADMIT_SCRIPT: Final = (
    _STATE
    + """
if not intact then return 'NEEDS_REBUILD' end
if redis.call('SISMEMBER', issued, ARGV[1]) == 1 then return 'ALREADY_ISSUED' end
if count >= total then return 'SOLD_OUT' end
redis.call('SADD', issued, ARGV[1])
redis.call('HINCRBY', meta, 'count', 1)
return 'ADMITTED'
"""
)
"""The admission script (KEYS: meta, issued; ARGV: the user id): public because the benchmarks'
bare reference runs the very same script, so that its figures are the gate's own cost."""

_UNDO: Final = (
    _STATE
    + """
if intact and redis.call('SREM', issued, ARGV[1]) == 1 then
  redis.call('HINCRBY', meta, 'count', -1)
  return 1
end
return 0
"""
)

_CONFIRM: Final = (
    _STATE
    + """
if not intact then return 0 end
local added = 0
for _, user in ipairs(ARGV) do added = added + redis.call('SADD', issued, user) end
redis.call('HINCRBY', meta, 'count', added)
return added
"""
)

_IS_INTACT: Final = _STATE + "\nif intact then return 1 end\nreturn 0\n"

_INSTALL: Final = (
    _STATE
    + """
-- KEYS[3]: a staging set holding the users read from PostgreSQL; ARGV: total, their number
local staged, holders = KEYS[3], tonumber(ARGV[2])
if intact then
  redis.call('DEL', staged)
  return 0
end
if redis.call('SCARD', staged) ~= holders then
  redis.call('DEL', staged)
  return -1
end
redis.call('DEL', issued)
if holders > 0 then redis.call('RENAME', staged, issued) end
redis.call('HSET', meta, 'total', ARGV[1], 'count', holders)
return 1
"""
)

_STAGING_TTL_MS: Final = 60_000
_STAGING_CHUNK: Final = 5_000


class Admission(StrEnum):
    ADMITTED = "ADMITTED"
    ALREADY_ISSUED = "ALREADY_ISSUED"
    SOLD_OUT = "SOLD_OUT"
    NEEDS_REBUILD = "NEEDS_REBUILD"


class Install(StrEnum):
    INSTALLED = "INSTALLED"
    ALREADY_INTACT = "ALREADY_INTACT"
    STAGING_LOST = "STAGING_LOST"


class GateUnavailable(Exception):
    """Redis did not answer. `maybe_applied`: the command was sent and may have run (a read
    timeout), as opposed to never reaching Redis (refused connection, empty pool)."""

    def __init__(self, reason: str, *, maybe_applied: bool) -> None:
        super().__init__(reason)
        self.maybe_applied = maybe_applied


@asynccontextmanager
async def _redis_errors(operation: str) -> AsyncIterator[None]:
    """Redis's failures as the gate's, and the call as a client span of a recorded trace."""
    try:
        with tracing.client_span(
            f"redis {operation}", {"db.system": "redis", "db.operation": operation}
        ):
            yield
    except redis_errors.TimeoutError as exc:
        raise GateUnavailable(f"Redis timed out: {exc}", maybe_applied=True) from exc
    except redis_errors.ConnectionError as exc:
        raise GateUnavailable(f"Redis is unreachable: {exc}", maybe_applied=False) from exc


class _KeyedLocks:
    """An asyncio lock per key, forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class IssuanceGate:
    def __init__(self, redis: "Redis", key_prefix: str) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self._admit = redis.register_script(ADMIT_SCRIPT)
        self._undo = redis.register_script(_UNDO)
        self._confirm = redis.register_script(_CONFIRM)
        self._is_intact = redis.register_script(_IS_INTACT)
        self._install = redis.register_script(_INSTALL)
        self._rebuilds = _KeyedLocks()

    @classmethod
    def connect(cls, settings: Settings) -> Self:
        """A pooled client that fails fast: short socket timeouts and no retries (a retried
        admission could admit a user and then answer them ALREADY_ISSUED). RESP2 keeps the
        handshake of a new connection to one round trip, which matters when a rush opens the
        pool's connections all at once."""
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_pool_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            socket_timeout=settings.redis_timeout_s,
            retry=Retry(NoBackoff(), 0),
            protocol=2,
            decode_responses=True,
        )
        return cls(Redis.from_pool(pool), settings.redis_key_prefix)

    def keys(self, coupon_id: int) -> tuple[str, str]:
        """(meta, issued): one hash slot per coupon, so the scripts also run on Redis Cluster."""
        tag = f"{self.key_prefix}:{{{coupon_id}}}"
        return f"{tag}:meta", f"{tag}:issued"

    async def admit(self, coupon_id: int, user_id: int) -> Admission:
        async with _redis_errors("admit"):
            verdict = await self._admit(keys=self.keys(coupon_id), args=[user_id])
        return Admission(verdict)

    async def undo(self, coupon_id: int, user_id: int) -> bool:
        """Takes back an admission whose database write failed; True when there was one."""
        async with _redis_errors("undo"):
            return bool(await self._undo(keys=self.keys(coupon_id), args=[user_id]))

    async def confirm(self, coupon_id: int, user_ids: Sequence[int]) -> int:
        """Makes sure issued users are in the gate (they may have been admitted by a gate that
        was lost, and rebuilt before their issuance committed); how many were missing."""
        async with _redis_errors("confirm"):
            return int(await self._confirm(keys=self.keys(coupon_id), args=list(user_ids)))

    async def is_intact(self, coupon_id: int) -> bool:
        async with _redis_errors("is_intact"):
            return bool(await self._is_intact(keys=self.keys(coupon_id)))

    async def install(self, coupon_id: int, total: int, holders: Iterable[int]) -> Install:
        """Loads the gate from the database's holders, unless it is intact by now."""
        meta, issued = self.keys(coupon_id)
        staged = f"{self.key_prefix}:{{{coupon_id}}}:staging:{uuid4().hex}"
        count = 0
        users = iter(holders)
        async with _redis_errors("install"):
            async with self.redis.pipeline(transaction=False) as pipe:
                while chunk := list(islice(users, _STAGING_CHUNK)):
                    pipe.sadd(staged, *chunk)
                    count += len(chunk)
                pipe.pexpire(staged, _STAGING_TTL_MS)
                await pipe.execute()
            outcome = await self._install(keys=[meta, issued, staged], args=[total, count])
        return {1: Install.INSTALLED, 0: Install.ALREADY_INTACT}.get(outcome, Install.STAGING_LOST)

    @asynccontextmanager
    async def rebuilding(self, coupon_id: int) -> AsyncIterator[None]:
        """One rebuild of a coupon's gate at a time in this process (the others wait and find it
        intact); across processes, the database's advisory lock does the same."""
        async with self._rebuilds.hold(coupon_id):
            yield

    async def state(self, coupon_id: int) -> tuple[dict[str, Any], set[int]]:
        """(meta, admitted users) as Redis holds them — for checks and operators."""
        meta, issued = self.keys(coupon_id)
        async with _redis_errors("state"):
            raw_meta = await self.redis.hgetall(meta)
            members = await self.redis.smembers(issued)
        return {str(k): int(v) for k, v in raw_meta.items()}, {int(m) for m in members}

    async def admitted(self, coupon_id: int) -> set[int] | None:
        """The users the gate has admitted, or None when the gate is not intact (then it admits
        no one until it is rebuilt from the database, which needs no repair)."""
        meta, issued = self.keys(coupon_id)
        async with _redis_errors("admitted"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hmget(meta, "total", "count")
                pipe.smembers(issued)
                (total, count), members = await pipe.execute()
        if total is None or count is None or int(count) != len(members):
            return None
        return {int(m) for m in members}

    async def forget(self, coupon_id: int) -> None:
        """Drops a coupon's gate, as a Redis flush would."""
        async with _redis_errors("forget"):
            await self.redis.delete(*self.keys(coupon_id))

    async def warm_up(self, connections: int, at_once: int = 32) -> int:
        """Opens pooled connections ahead of a rush, so its first moments are not spent opening
        hundreds at once (each handshake waiting its turn on a busy event loop, against the
        short connect timeout). Opens them a few at a time, for the same reason. Returns how
        many are open; if Redis is down, the requests find out for themselves."""
        pool = self.redis.connection_pool
        ready: list[Any] = []
        while len(ready) < connections:
            batch = await asyncio.gather(
                *(
                    pool.get_connection()  # type: ignore[no-untyped-call]
                    for _ in range(min(at_once, connections - len(ready)))
                ),
                return_exceptions=True,
            )
            opened = [c for c in batch if not isinstance(c, BaseException)]
            ready.extend(opened)
            if len(opened) < len(batch):
                break
        for connection in ready:
            await pool.release(connection)
        return len(ready)

    async def ping(self) -> None:
        async with _redis_errors("ping"):
            await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
