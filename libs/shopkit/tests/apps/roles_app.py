"""A service of the tests' own, served by `shopkit.http.app.serve` in a process of its own: its one
worker writes the pid of the process that runs it to the file named by ROLES_MARKS."""

import asyncio
import os
from pathlib import Path

from fastapi import FastAPI

from shopkit.http.app import create_app as create_service_app
from shopkit.ops.runtime import Runtime
from shopkit.settings import ServiceSettings


async def mark(_: Runtime, stop: asyncio.Event) -> None:
    with Path(os.environ["ROLES_MARKS"]).open("a") as marks:  # noqa: ASYNC230 (one line, once)
        marks.write(f"{os.getpid()}\n")
    await stop.wait()


def create_app() -> FastAPI:
    runtime = Runtime(ServiceSettings(), workers=[mark], publishes=False)
    return create_service_app(runtime, title="roles", routers=[])


if __name__ == "__main__":
    from shopkit.http.app import serve

    serve("apps.roles_app:create_app", ServiceSettings())
