"""Pacing of the event runtime's loops (consumers, outbox relay) under load."""

import asyncio


class Pace:
    """At most one round per `linger_s` while busy: a round that would start sooner than
    `linger_s` after the previous one waits for the rest, so that what arrives meanwhile is
    handled together. After a quiet spell a round starts at once (no added latency)."""

    def __init__(self, linger_s: float) -> None:
        self._linger_s = linger_s
        self._last = -linger_s

    def started(self) -> None:
        self._last = asyncio.get_running_loop().time()

    async def wait(self) -> None:
        remaining = self._last + self._linger_s - asyncio.get_running_loop().time()
        if remaining > 0:
            await asyncio.sleep(remaining)
