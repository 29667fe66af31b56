"""Worker-only process (outbox relay + consumers, no HTTP): `python -m point.workers`."""

import asyncio

from point.main import build_runtime

asyncio.run(build_runtime().run_forever())
