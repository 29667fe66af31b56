"""Worker-only process (outbox relay + consumers, no HTTP): `python -m coupon.workers`."""

import asyncio

from coupon.main import build_runtime

asyncio.run(build_runtime().run_forever())
