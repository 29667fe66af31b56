"""One HTTP process (shopkit.http.server.QuietServer): uvicorn's server driven by a loop of
ours through uvicorn's public API. It serves with uvicorn's default headers, and SIGTERM or
SIGINT shut it down gracefully (the app's lifespan ends) and then end the process by that
signal, as uvicorn's own loop does."""

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shopkit.testing import eventually, free_port

TESTS = Path(__file__).resolve().parent


def _start(port: int, output: Path) -> subprocess.Popen[bytes]:
    """The bare app served by QuietServer on `port` (its output to `output`)."""
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, str(TESTS / "apps" / "quiet_app.py"), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serves_then_stops_gracefully_on_a_signal(tmp_path: Path, sig: int) -> None:
    port = free_port()
    output = tmp_path / "out.log"
    server = _start(port, output)
    try:

        async def answered() -> httpx.Response | None:
            try:
                async with httpx.AsyncClient() as http:
                    return await http.get(f"http://127.0.0.1:{port}/")
            except httpx.ConnectError:
                return None

        response = await eventually(answered, timeout_s=30)
        assert response.status_code == 200
        assert response.text == "ok"
        assert "date" in response.headers  # on_tick ran: uvicorn's default headers are set
        server.send_signal(sig)
        code = await asyncio.to_thread(server.wait, 30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert code == -sig  # the caught signal raised again once shut down, as uvicorn does
    log = output.read_text()
    assert log.count("app_started") == 1
    assert log.count("app_stopped") == 1  # the lifespan ended: a graceful shutdown
