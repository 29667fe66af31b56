"""What the shared fixtures need to know of the service whose tests run: its conftest.py returns
one `ServiceUnderTest` from a session-scoped `service` fixture, and the fixtures of
`shopkit.testing.plugin` (settings, the app over HTTP, a client, the database…) do the rest."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shopkit.settings import ServiceSettings
from shopkit.testing.tokens import ActAsUser


@dataclass(frozen=True)
class ServiceUnderTest:
    """One service as its tests see it: enough to make its settings, database and app."""

    name: str
    """Names its throwaway database (`t_<name>_…`) and topic prefix (`t.<name>.…`)."""
    settings: type[ServiceSettings]
    """The service's Settings class."""
    create_app: Callable[[Any], Any]
    """The service's ASGI app for given settings, with its workers (consumers, relays…)."""
    migrations: Path | None = None
    """Its Alembic scripts, applied to the throwaway database before any test uses it."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Settings its tests need other than the defaults (faster sweeps, a Redis key prefix…)."""
    connections: int = 100
    """How many connections its test client may open at once (the concurrency its tests use)."""
    cleanup: Callable[[Any], Awaitable[None]] | None = None
    """What its settings leave outside the throwaway database, removed at the session's end
    (e.g. coupon's keys in the shared Redis)."""

    def client(self, base_url: str, settings: ServiceSettings) -> httpx.AsyncClient:
        """A client of one instance of the service, acting as the user each request is about."""
        limits = httpx.Limits(
            max_connections=self.connections, max_keepalive_connections=self.connections
        )
        return httpx.AsyncClient(
            base_url=base_url, timeout=60, limits=limits, auth=ActAsUser(settings.jwt_secret)
        )
