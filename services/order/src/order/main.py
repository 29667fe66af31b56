"""The order service: orders, the saga's state, its deadline, and `Prefer: wait` answers."""

from pathlib import Path

from fastapi import FastAPI

from order.adapters.completions import OrderCompletions
from order.api.routes import router
from order.config import Settings
from order.service.deadlines import deadline_sweeper
from order.service.handlers import CONSUMERS
from shopkit.http.app import create_app as create_service_app
from shopkit.ops.runtime import Runtime

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or Settings()
    return Runtime(
        settings,
        migrations=MIGRATIONS,
        consumers=CONSUMERS,
        workers=[deadline_sweeper(settings)],
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = build_runtime(settings)
    # Every API process (also one started with run_workers=false) answers `Prefer: wait`: the
    # runtime's listener runs in each and wakes the requests waiting on an order that ended.
    completions = OrderCompletions()
    completions.listen_on(runtime.listener)
    app = create_service_app(runtime, title="Order service", routers=[router])
    app.state.completions = completions
    return app
