"""Request-scoped dependencies of the order routes."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from order.adapters.completions import OrderCompletions
from order.api.prefer import requested_wait
from order.config import Settings
from shopkit.database.uow import UnitOfWork
from shopkit.ops.runtime import Runtime


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session from the API's pool (a bulkhead: the saga's workers have their own)."""
    runtime: Runtime = request.app.state.runtime
    async with runtime.api_sessions() as db:
        yield db


async def unit_of_work(request: Request) -> UnitOfWork:
    runtime: Runtime = request.app.state.runtime
    return runtime.unit_of_work()


# Dependencies are coroutines: a plain `def` one would cost a worker-thread hop per request.
async def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


async def completions(request: Request) -> OrderCompletions:
    value: OrderCompletions = request.app.state.completions
    return value


async def wait_preference(
    request: Request,
    prefer: Annotated[
        str | None,
        Header(
            description="`wait=N` (RFC 7240): answer as soon as the saga ends (201 with the "
            "final order), or after N seconds (at most 30) with the order still pending (202). "
            "Invalid or other preferences are ignored.",
            examples=["wait=10"],
        ),
    ] = None,
) -> float | None:
    """`Prefer: wait=N` (N ≤ max_wait_s); None when absent or invalid."""
    del prefer  # declared for the OpenAPI document; every Prefer header is read below
    config: Settings = request.app.state.settings
    return requested_wait(request.headers.getlist("prefer"), config.max_wait_s)


Db = Annotated[AsyncSession, Depends(session)]
Uow = Annotated[UnitOfWork, Depends(unit_of_work)]
AppSettings = Annotated[Settings, Depends(settings)]
Completions = Annotated[OrderCompletions, Depends(completions)]
WaitPreference = Annotated[float | None, Depends(wait_preference)]
