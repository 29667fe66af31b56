"""The ranking service's API: serves the latest top-products snapshot (no consumers here;
the Faust worker, `python -m ranking.workers`, does the streaming)."""

from pathlib import Path

from fastapi import FastAPI

from ranking.api.routes import router
from ranking.config import Settings
from ranking.service.snapshots import LatestRanking
from shopkit.http.app import create_app as create_service_app
from shopkit.ops.runtime import Runtime

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(settings or Settings(), migrations=MIGRATIONS)


def create_app(settings: Settings | None = None) -> FastAPI:
    runtime = build_runtime(settings)
    app = create_service_app(runtime, title="Ranking service", routers=[router])
    app.state.latest_ranking = LatestRanking(runtime.api_unit_of_work)
    return app
