"""Our gateway in tests: nginx rendered from deploy/gateway's template exactly as
`deploy/local/gateway.sh` renders it, in front of the processes the e2e harness started."""

import asyncio
import importlib.util
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from shopkit.testing import free_port
from shopkit.testing.processes import System

from .client import Shop

ROOT = Path(__file__).resolve().parents[2]
# The key of a gateway in front of stand-ins (the harness's services have their own).
TEST_JWT_SECRET = "gateway-test-secret-" + "x" * 32


def _renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gateway_render", ROOT / "deploy" / "gateway" / "render.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        pytest.fail("nginx is not installed: run `deploy/local/gateway.sh install` (or make run)")
    if not any(Path(module).exists() for module in _renderer().NJS_MODULES):
        pytest.fail("njs is not installed: run `deploy/local/gateway.sh install` (or make run)")
    return found


@dataclass
class Gateway:
    """Our own nginx master in the foreground, on a free port, with its files in a temp dir."""

    directory: Path
    upstreams: Mapping[str, str]
    issue_rate: str = "20r/s"
    issue_burst: int = 40
    settings: Mapping[str, str] = field(default_factory=dict)
    """More GATEWAY_* values (limits, trusted proxies)."""
    jwt_secret: str = TEST_JWT_SECRET
    """The services' key, with which the gateway verifies tokens (nginx's JWT_SECRET)."""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def error_log(self) -> Path:
        return self.directory / "logs" / "gateway-error.log"

    async def start(self) -> None:
        env = {
            "GATEWAY_HTTP_PORT": str(self.port),
            "GATEWAY_ISSUE_RATE": self.issue_rate,
            "GATEWAY_ISSUE_BURST": str(self.issue_burst),
            **{f"GATEWAY_{name.upper()}_UPSTREAM": addr for name, addr in self.upstreams.items()},
            **self.settings,
        }
        conf = _renderer().render_local(
            self.directory / "state", self.directory / "logs", env, worker_processes="1"
        )
        nginx = _nginx()
        base = [nginx, "-p", str(conf.parent), "-e", str(self.error_log), "-c", str(conf)]
        nginx_env = {**os.environ, "JWT_SECRET": self.jwt_secret}
        check = await asyncio.to_thread(
            subprocess.run, [*base, "-t", "-q"], capture_output=True, text=True, env=nginx_env
        )
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen([*base, "-g", "daemon off;"], env=nginx_env)  # noqa: ASYNC220
        deadline = asyncio.get_running_loop().time() + 20
        async with httpx.AsyncClient(timeout=1) as http:
            while True:
                assert self.process.poll() is None, self.error_log.read_text()
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "gateway did not start"
                await asyncio.sleep(0.05)

    async def __aenter__(self) -> "Gateway":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish requests in flight
            try:
                await asyncio.to_thread(self.process.wait, 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def upstreams(system: System, services: Iterable[str], *, absent_port: int) -> dict[str, str]:
    """The address of each of `services` the harness runs; `absent_port` for one it does not."""
    return {
        name: f"127.0.0.1:{system.services[name].port if name in system.services else absent_port}"
        for name in services
    }


class GatewayShop(Shop):
    """The e2e client with every service's URL replaced by the gateway's."""

    gateway_url: str = ""

    def url(self, service: str, path: str) -> str:
        return f"{self.gateway_url}{path}"
