"""A service of the tests' own, served by `shopkit.http.app.serve` in a process of its own: its one
worker writes the pid of the process that runs it to the file named by ROLES_MARKS. `/pid` says
which process answered; `/hog` makes that process's event loop late from then on."""

import asyncio
import os
import time
from pathlib import Path

from fastapi import APIRouter, FastAPI

from shopkit.http.app import create_app as create_service_app
from shopkit.ops.runtime import Runtime
from shopkit.settings import ServiceSettings


async def mark(_: Runtime, stop: asyncio.Event) -> None:
    with Path(os.environ["ROLES_MARKS"]).open("a") as marks:  # noqa: ASYNC230 (one line, once)
        marks.write(f"{os.getpid()}\n")
    await stop.wait()


router = APIRouter()


@router.get("/pid")
async def pid() -> int:
    return os.getpid()


_hogs: set[asyncio.Task[None]] = set()


@router.post("/hog")
async def hog(seconds: float) -> int:
    """From now on a task of this process blocks its event loop `seconds` at a time."""

    async def keep_blocking() -> None:
        while True:
            time.sleep(seconds)  # noqa: ASYNC251 (on purpose: event_loop_lag_seconds)
            await asyncio.sleep(0)

    _hogs.add(asyncio.create_task(keep_blocking()))
    return os.getpid()


def create_app() -> FastAPI:
    runtime = Runtime(ServiceSettings(), workers=[mark], publishes=False)
    return create_service_app(runtime, title="roles", routers=[router])


if __name__ == "__main__":
    from shopkit.http.app import serve

    serve("apps.roles_app:create_app", ServiceSettings())
