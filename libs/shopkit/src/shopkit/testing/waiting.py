"""Waiting for what happens asynchronously (a consumer, a relay, another process) without a
fixed sleep: poll until it holds, fail with what was last seen."""

import asyncio
from collections.abc import Callable
from typing import Any


async def eventually(
    probe: Callable[[], Any], *, timeout_s: float = 30.0, interval_s: float = 0.1
) -> Any:
    """Await `probe()` until it returns a truthy value (the value is returned)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met in {timeout_s}s (last: {last!r})")
        await asyncio.sleep(interval_s)
