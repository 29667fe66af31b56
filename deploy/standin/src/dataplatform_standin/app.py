"""The stand-in's HTTP API.

`POST /orders` is the platform's side of the contract in API.md ("Data platform (outbound)"):
the body must carry `X-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`, and a
delivery is recorded once per `Idempotency-Key` (a replay answers 200 and records nothing new).
The `/control/*` endpoints let tests and operators make it misbehave. State is in memory.
"""

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SECRET = "local-dev-platform-secret"


def sign(body: bytes, secret: str) -> str:
    """The `X-Signature` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    idempotency_key: str
    order: dict[str, Any]
    received_at: datetime
    replays: int = 0


@dataclass
class Faults:
    """How the platform is told to misbehave (the /control endpoints)."""

    fail_next: int = 0
    fail_status: int = 503
    slow_s: float = 0.0


@dataclass
class Platform:
    """What the platform has received, and how it is told to misbehave."""

    deliveries: dict[str, Delivery] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: int = 0
    injected_failures: int = 0
    rejected_signatures: int = 0
    duplicates: int = 0


class FailNext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: Annotated[int, Field(ge=0)]
    status: Annotated[int, Field(ge=400, le=599)] = 503


class Slow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: Annotated[float, Field(ge=0, le=300)]


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


State = Annotated[Platform, Depends(_platform)]


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def create_app(secret: str = DEFAULT_SECRET) -> FastAPI:
    app = FastAPI(title="Data platform stand-in")
    app.state.platform = Platform()

    @app.post("/orders")
    async def receive_order(
        request: Request,
        platform: State,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
        signature: Annotated[str | None, Header(alias="X-Signature")] = None,
    ) -> JSONResponse:
        platform.requests += 1
        body = await request.body()
        faults = platform.faults
        if faults.slow_s:
            await asyncio.sleep(faults.slow_s)
        if faults.fail_next > 0:
            faults.fail_next -= 1
            platform.injected_failures += 1
            return _error(faults.fail_status, "injected failure")
        if signature is None or not hmac.compare_digest(signature, sign(body, secret)):
            platform.rejected_signatures += 1
            return _error(401, "bad or missing X-Signature")
        if not idempotency_key:
            return _error(400, "missing Idempotency-Key")
        try:
            order = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(order, dict):
            return _error(400, "the body must be a JSON object")
        known = platform.deliveries.get(idempotency_key)
        if known is not None:
            known.replays += 1
            platform.duplicates += 1
            return JSONResponse({"status": "duplicate", "idempotency_key": idempotency_key})
        platform.deliveries[idempotency_key] = Delivery(
            idempotency_key, order, received_at=datetime.now(UTC)
        )
        return JSONResponse(
            {"status": "accepted", "idempotency_key": idempotency_key}, status_code=201
        )

    @app.get("/orders")
    async def list_orders(platform: State) -> dict[str, list[dict[str, Any]]]:
        return {
            "items": [
                {
                    "idempotency_key": d.idempotency_key,
                    "received_at": d.received_at.isoformat(),
                    "replays": d.replays,
                    "order": d.order,
                }
                for d in platform.deliveries.values()
            ]
        }

    @app.post("/control/fail-next")
    async def fail_next(body: FailNext, platform: State) -> dict[str, int]:
        platform.faults.fail_next, platform.faults.fail_status = body.count, body.status
        return {"count": body.count, "status": body.status}

    @app.post("/control/slow")
    async def slow(body: Slow, platform: State) -> dict[str, float]:
        platform.faults.slow_s = body.seconds
        return {"seconds": body.seconds}

    @app.post("/control/reset")
    async def reset() -> dict[str, str]:
        app.state.platform = Platform()
        return {"status": "reset"}

    @app.get("/control/stats")
    async def stats(platform: State) -> dict[str, int | float]:
        return {
            "requests": platform.requests,
            "accepted": len(platform.deliveries),
            "duplicates": platform.duplicates,
            "injected_failures": platform.injected_failures,
            "rejected_signatures": platform.rejected_signatures,
            "fail_next": platform.faults.fail_next,
            "slow_seconds": platform.faults.slow_s,
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
