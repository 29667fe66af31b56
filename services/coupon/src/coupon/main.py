"""The coupon service: coupon definitions, first-come issuance, and the saga's pricing step."""

from pathlib import Path

from fastapi import FastAPI

from coupon.adapters.gate import IssuanceGate
from coupon.api.routes import router
from coupon.config import Settings
from coupon.service.batching import IssuanceBatcher
from coupon.service.handlers import CONSUMERS
from coupon.service.reconciling import gate_reconciler
from shopkit.http.app import create_app as create_service_app
from shopkit.ops.logging import get_logger
from shopkit.ops.runtime import Runtime

log = get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: Settings | None = None, gate: IssuanceGate | None = None) -> Runtime:
    """The service's process: with a gate, one that serves issuance requests."""
    settings = settings or Settings()
    runtime = Runtime(
        settings,
        migrations=MIGRATIONS,
        consumers=CONSUMERS,
        workers=[gate_reconciler(settings, gate)],
    )
    if gate is not None:

        async def warm_redis_pool(_: Runtime) -> None:
            """Opens the gate's connections before a rush can need them."""
            opened = await gate.warm_up(settings.redis_warm_connections)
            log.info("redis_pool_warmed", connections=opened)

        async def close_redis_pool(_: Runtime) -> None:
            await gate.close()

        runtime.on_start.append(warm_redis_pool)
        runtime.on_stop.append(close_redis_pool)
        # Without Redis only issuing fails (503, quickly); reading coupons and pricing orders go
        # on: the process stays ready and /readyz names Redis as degraded.
        runtime.degraded_checks["redis"] = gate.ping
    return runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    gate = IssuanceGate.connect(settings)
    runtime = build_runtime(settings, gate)
    writer = IssuanceBatcher(runtime.api_unit_of_work)
    runtime.components.append(writer.run)
    app = create_service_app(runtime, title="Coupon service", routers=[router])
    app.state.gate = gate
    app.state.writer = writer
    return app
