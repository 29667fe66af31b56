"""The bare reference: the least work each scenario needs, as a raw ASGI app (no framework),
served by uvicorn in its own process with one worker and the services' uvicorn options. Each
scenario's rate is reported as a ratio to the matching route, measured in the same run under
the same wrk settings.

    POST /gate/{coupon_id} {"user_id": N}  the coupon service's Redis admission script; the
                                           coupon is sold out → 409 {"code": "COUPON_SOLD_OUT"}
    POST /win/{coupon_id}  {"user_id": N}  the same script on a coupon of a huge total, then one
                                           INSERT → 201 (409 when not admitted)
    GET  /read/{id}                        one primary-key SELECT → 200 (404 when absent)
    GET  /readyz                           200 once the pool, the tables and the gate are ready

    BENCH_REF_DSN=postgresql://… BENCH_REF_REDIS_URL=redis://… BENCH_REF_PREFIX=… \\
        BENCH_REF_PORT=… python -m benchmarks.reference
"""

import os
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
import orjson
from redis.asyncio import BlockingConnectionPool, Redis

from coupon.adapters.gate import ADMIT_SCRIPT

SOLD_OUT_COUPON: Final = 1
"""Its gate: total 1, count 1, issued {0}: every other user is refused SOLD_OUT."""
WIN_COUPON: Final = 2
"""Its gate: a total nobody reaches, so every new user is admitted."""
WIN_TOTAL: Final = 10**15
READ_ROWS: Final = 100

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS bench_ref_issues (
    coupon_id bigint NOT NULL,
    user_id bigint NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (coupon_id, user_id)
);
CREATE TABLE IF NOT EXISTS bench_ref_items (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    price bigint NOT NULL,
    stock bigint NOT NULL
);
INSERT INTO bench_ref_items
    SELECT g, 'item ' || g, 1000 * g, 100 FROM generate_series(1, {READ_ROWS}) g
    ON CONFLICT DO NOTHING;
"""


def gate_keys(prefix: str, coupon_id: int) -> list[str]:
    """Same layout as coupon.adapters.gate.IssuanceGate.keys."""
    tag = f"{prefix}:{{{coupon_id}}}"
    return [f"{tag}:meta", f"{tag}:issued"]


class ReferenceApp:
    def __init__(self, dsn: str, redis_url: str, prefix: str, pool_size: int) -> None:
        self.dsn = dsn
        self.prefix = prefix
        self.pool_size = pool_size
        self.redis = Redis.from_pool(
            BlockingConnectionPool.from_url(
                redis_url, max_connections=512, protocol=2, decode_responses=True
            )
        )
        self.admit = self.redis.register_script(ADMIT_SCRIPT)
        self.pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=self.pool_size, max_size=self.pool_size
        )
        async with self.pool.acquire() as connection:
            await connection.execute(SCHEMA)
        sold_out, win = gate_keys(self.prefix, SOLD_OUT_COUPON), gate_keys(self.prefix, WIN_COUPON)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*sold_out, *win)
            pipe.hset(sold_out[0], mapping={"total": 1, "count": 1})
            pipe.sadd(sold_out[1], 0)
            pipe.hset(win[0], mapping={"total": WIN_TOTAL, "count": 0})
            await pipe.execute()

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        await self.redis.aclose()

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, parts = scope["method"], scope["path"].strip("/").split("/")
        if method == "POST" and len(parts) == 2 and parts[0] in ("gate", "win"):
            body = orjson.loads(await read_body(receive))
            coupon_id, user_id = int(parts[1]), int(body["user_id"])
            verdict = await self.admit(keys=gate_keys(self.prefix, coupon_id), args=[user_id])
            if verdict != "ADMITTED":
                code = "COUPON_SOLD_OUT" if verdict == "SOLD_OUT" else f"COUPON_{verdict}"
                await respond(send, 409, {"status": 409, "code": code})
            elif parts[0] == "gate":
                await respond(send, 201, {"coupon_id": coupon_id, "user_id": user_id})
            else:
                assert self.pool is not None
                issued_at = await self.pool.fetchval(
                    "INSERT INTO bench_ref_issues (coupon_id, user_id) VALUES ($1, $2)"
                    " RETURNING issued_at",
                    coupon_id,
                    user_id,
                )
                await respond(
                    send,
                    201,
                    {"coupon_id": coupon_id, "user_id": user_id, "issued_at": issued_at},
                )
        elif method == "GET" and len(parts) == 2 and parts[0] == "read":
            assert self.pool is not None
            row = await self.pool.fetchrow(
                "SELECT id, name, price, stock FROM bench_ref_items WHERE id = $1", int(parts[1])
            )
            if row is None:
                await respond(send, 404, {"status": 404, "code": "NOT_FOUND"})
            else:
                await respond(send, 200, dict(row))
        elif method == "POST" and parts == ["v1", "traces"]:
            # An OTLP trace sink that keeps nothing (benchmarks/orders.py, tracing-cost): the
            # services pay for recording and exporting spans, nobody for storing them.
            await read_body(receive)
            await respond(send, 200, {})
        elif method == "GET" and parts == ["readyz"]:
            await respond(send, 200, {"status": "ready"})
        else:
            await respond(send, 404, {"status": 404, "code": "NOT_FOUND"})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    app = ReferenceApp(
        dsn=os.environ["BENCH_REF_DSN"],
        redis_url=os.environ["BENCH_REF_REDIS_URL"],
        prefix=os.environ["BENCH_REF_PREFIX"],
        pool_size=int(os.environ.get("BENCH_REF_POOL", "16")),
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["BENCH_REF_PORT"]),
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=10,
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
