"""The coupon service: coupon definitions, first-come issuance, and the saga's pricing step."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from coupon.adapters.gate import IssuanceGate
from coupon.api.routes import router
from coupon.config import Settings
from coupon.service.handlers import CONSUMERS
from shopkit.api import create_app as create_service_app
from shopkit.api import serve
from shopkit.logging import get_logger
from shopkit.runtime import Runtime

log = get_logger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: Settings | None = None, gate: IssuanceGate | None = None) -> Runtime:
    return Runtime(
        settings or Settings(),
        migrations=MIGRATIONS,
        consumers=CONSUMERS,
        readiness_checks=[] if gate is None else [gate.ping],
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    gate = IssuanceGate.connect(settings)
    app = create_service_app(
        build_runtime(settings, gate), title="Coupon service", routers=[router]
    )
    app.state.gate = gate
    runtime_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with runtime_lifespan(app):
                opened = await gate.warm_up(settings.redis_warm_connections)
                log.info("redis_pool_warmed", connections=opened)
                yield
        finally:
            await gate.close()

    app.router.lifespan_context = lifespan
    return app


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
