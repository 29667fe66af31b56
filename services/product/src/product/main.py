"""The product service: the catalogue, its stock, and the saga's reservation step."""

from pathlib import Path

from fastapi import FastAPI

from product.api.routes import router
from product.config import Settings
from product.service.handlers import CONSUMERS
from shopkit.http.app import create_app as create_service_app
from shopkit.ops.runtime import Runtime

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(settings or Settings(), migrations=MIGRATIONS, consumers=CONSUMERS)


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(build_runtime(settings), title="Product service", routers=[router])
