"""Request-scoped dependencies of the order routes."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order.adapters.completions import OrderCompletions
from order.api.prefer import requested_wait
from order.config import Settings


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session from the API's own pool (see main.create_app); the use case opens and
    commits its own transactions."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.api_sessions
    async with sessions() as db:
        yield db


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


def completions(request: Request) -> OrderCompletions:
    value: OrderCompletions = request.app.state.completions
    return value


def wait_preference(
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
AppSettings = Annotated[Settings, Depends(settings)]
Completions = Annotated[OrderCompletions, Depends(completions)]
WaitPreference = Annotated[float | None, Depends(wait_preference)]
