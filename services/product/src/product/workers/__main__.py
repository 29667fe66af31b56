"""Worker-only process (outbox relay + consumers, no HTTP): `python -m product.workers`."""

import asyncio

from product.main import build_runtime

asyncio.run(build_runtime().run_forever())
