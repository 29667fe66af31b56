"""The real services as OS processes (`python -m <service>`), each with a throwaway database
and one shared throwaway Kafka topic prefix, so an end-to-end run never sees another's data.
They run as in production, outside local mode, with strong secrets made for the run.

Shared by the end-to-end and chaos tests and by the benchmarks, which start the same shop."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shopkit.testing.servers import free_port
from shopkit.testing.throwaway import ADMIN_DSN, temp_database


def _workspace_root() -> Path:
    """The uv workspace this package is installed from (editable: the folder holding uv.lock),
    whose `.local` holds the logs of `make run` too; the working directory otherwise."""
    here = Path(__file__).resolve()
    return next((p for p in here.parents if (p / "uv.lock").is_file()), Path.cwd())


LOG_DIR = Path(os.environ.get("STATE_DIR", _workspace_root() / ".local")) / "logs"


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    port: int
    module: str = ""
    ready_path: str | None = "/readyz"
    """Polled until it answers 200; None for a process without HTTP (started, not awaited)."""
    python: str = sys.executable
    """The interpreter that runs `-m module` (another checkout's `.venv/bin/python` runs that
    checkout's code: the benchmarks compare a commit with the working tree so)."""
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = (LOG_DIR / f"e2e-{self.name}.log").open("ab")
        self.process = subprocess.Popen(  # noqa: ASYNC220 (fork+exec, returns at once)
            [self.python, "-m", self.module or self.name],
            env={**os.environ, **self.env},
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        await self.wait_ready(timeout_s)

    async def wait_ready(self, timeout_s: float) -> None:
        if self.ready_path is None:
            return
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode}; see {LOG_DIR}"
                    )
                try:
                    if (await client.get(f"{self.url}{self.ready_path}")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"{self.name} not ready after {timeout_s}s; see {LOG_DIR}")
                await asyncio.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no graceful anything, as a crash would be."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    async def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                self.kill()

    async def restart(self) -> None:
        self.kill()
        await self.start()


@dataclass(frozen=True)
class Secrets:
    """What production configures: a signing key for tokens and one for the data platform."""

    jwt: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    data_platform: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    def env(self) -> dict[str, str]:
        return {
            "SHOP_LOCAL_MODE": "false",
            "JWT_SECRET": self.jwt,
            "DATA_PLATFORM_SECRET": self.data_platform,
        }


@dataclass
class System:
    services: dict[str, ServiceProcess]
    database_urls: dict[str, str]
    topic_prefix: str
    secrets: Secrets

    def url(self, name: str) -> str:
        return self.services[name].url


SERVICES = ("point", "product", "coupon", "order")


async def start_system(
    stack: AsyncExitStack,
    topic_prefix: str,
    extra_env: dict[str, str],
    admin_dsn: str = ADMIN_DSN,
    *,
    python: str = sys.executable,
    cwd: Path | None = None,
) -> System:
    """The four services, each on a throwaway database of the server of `admin_dsn` (the
    shared stack's by default; a test's own to restart: shopkit.testing.postgres), run by
    `python` in `cwd`."""
    urls = {
        name: await stack.enter_async_context(temp_database(f"e2e_{name}", admin_dsn))
        for name in SERVICES
    }
    run_secrets = Secrets()
    shared = {
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "LOG_LEVEL": "INFO",
        **run_secrets.env(),
        **extra_env,
    }
    services = {}
    for name in SERVICES:
        prefix = name.upper()
        port = free_port()
        services[name] = ServiceProcess(
            name=name,
            port=port,
            env={**shared, f"{prefix}_DATABASE_URL": urls[name], f"{prefix}_HTTP_PORT": str(port)},
            python=python,
            cwd=cwd,
        )
    system = System(services, urls, topic_prefix, run_secrets)

    async def stop_all() -> None:
        await asyncio.gather(*(s.stop() for s in services.values()))

    stack.push_async_callback(stop_all)
    await asyncio.gather(*(s.start() for s in services.values()))
    return system


def _ranking_api(database_url: str, shared: dict[str, str]) -> ServiceProcess:
    port = free_port()
    env = {**shared, "RANKING_DATABASE_URL": database_url, "RANKING_HTTP_PORT": str(port)}
    return ServiceProcess(name="ranking", port=port, env=env)


async def start_ranking_api(
    stack: AsyncExitStack, system: System, env: dict[str, str]
) -> ServiceProcess:
    """The ranking API alone (its database migrated, no worker), on the system's secrets; in
    `system.services` until the stack closes."""
    database_url = await stack.enter_async_context(temp_database("e2e_ranking"))
    shared = {"KAFKA_TOPIC_PREFIX": system.topic_prefix, **system.secrets.env(), **env}
    ranking = _ranking_api(database_url, shared)
    stack.push_async_callback(ranking.stop)
    await ranking.start()
    system.services["ranking"] = ranking
    stack.callback(system.services.pop, "ranking", None)
    return ranking


async def start_rest_of_shop(
    stack: AsyncExitStack,
    system: System,
    env: dict[str, str],
    *,
    python: str = sys.executable,
    cwd: Path | None = None,
) -> dict[str, ServiceProcess]:
    """The processes beyond the four services, on the system's topics and secrets: the
    stand-in data platform, the data-platform relay, the ranking API and the ranking worker
    (run by `python` in `cwd`, as start_system's)."""
    ranking_url = await stack.enter_async_context(temp_database("e2e_ranking"))
    system.database_urls["ranking"] = ranking_url
    shared = {"KAFKA_TOPIC_PREFIX": system.topic_prefix, **system.secrets.env(), **env}
    port = free_port()
    standin = ServiceProcess(
        name="dataplatform",
        module="dataplatform_standin",
        port=port,
        ready_path="/healthz",
        env={**shared, "STANDIN_PORT": str(port)},
    )
    relay = ServiceProcess(name="order-relay", module="order.relay", port=free_port(), env={})
    relay.env = {
        **shared,
        "ORDER_RELAY_DATABASE_URL": system.database_urls["order"],
        "ORDER_RELAY_HTTP_PORT": str(relay.port),
        "DATA_PLATFORM_URL": standin.url,
    }
    ranking = _ranking_api(ranking_url, shared)
    worker = ServiceProcess(
        name="ranking-worker",
        module="ranking.workers",
        port=0,
        ready_path=None,
        env={**shared, "RANKING_DATABASE_URL": ranking_url},
    )
    rest = {p.name: p for p in (standin, relay, ranking, worker)}
    for process in rest.values():
        process.python, process.cwd = python, cwd
        stack.push_async_callback(process.stop)
    await asyncio.gather(ranking.start(), standin.start())  # the ranking API migrates its DB
    await asyncio.gather(relay.start(), worker.start())
    system.services.update(rest)
    return rest
