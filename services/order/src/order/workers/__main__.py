"""Worker-only process (outbox relay, saga consumers, deadline sweeper; no HTTP):
`python -m order.workers`."""

import asyncio

from order.main import build_runtime

asyncio.run(build_runtime().run_forever())
