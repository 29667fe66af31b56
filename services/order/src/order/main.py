"""The order service: orders, the saga's state, its deadline, and `Prefer: wait` answers."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from order.adapters.completions import OrderCompletions
from order.api.routes import router
from order.config import Settings
from order.service.deadlines import deadline_sweeper
from order.service.handlers import CONSUMERS
from shopkit.api import create_app as create_service_app
from shopkit.api import serve
from shopkit.db import create_engine, session_factory
from shopkit.runtime import Runtime

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
    settings = settings or Settings()
    runtime = build_runtime(settings)
    completions = OrderCompletions(
        settings.database_url, application_name=f"{settings.service_name}-completions"
    )
    runtime.readiness_checks.append(completions.check_ready)
    app = create_service_app(runtime, title="Order service", routers=[router])
    app.state.completions = completions
    # A bulkhead: HTTP requests get their own connection pool, so a flood of reads (clients
    # polling their orders) never queues the saga consumers and the sweeper behind it; they
    # keep the Runtime's pool to themselves.
    api_engine = create_engine(settings)
    app.state.api_sessions = session_factory(api_engine)
    # The listener serves this process's waiting requests, so it runs in every API process,
    # also those started with run_workers=false (the Runtime's workers would not run there).
    _run_alongside(app, completions.run, cleanup=api_engine.dispose)
    return app


def _run_alongside(
    app: FastAPI,
    task: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    cleanup: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    """Runs `task(stop)` between the runtime's start and stop (shopkit owns the lifespan),
    then `cleanup()`."""
    runtime_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime_lifespan(app):
            stop = asyncio.Event()
            running = asyncio.create_task(task(stop), name=getattr(task, "__name__", "task"))
            try:
                yield
            finally:
                stop.set()
                await running
                await cleanup()

    app.router.lifespan_context = lifespan


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
