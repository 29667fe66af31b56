"""Request-scoped dependencies of the order routes."""

from typing import Annotated

from fastapi import Depends, Header, Request

from order.adapters.completions import OrderCompletions
from order.api.prefer import requested_wait
from order.config import Settings


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


AppSettings = Annotated[Settings, Depends(settings)]
Completions = Annotated[OrderCompletions, Depends(completions)]
WaitPreference = Annotated[float | None, Depends(wait_preference)]
