"""Tests are a local run: the services' settings accept the public local default secrets
(SHOP_LOCAL_MODE, as deploy/local/run.sh sets it). The end-to-end harness runs its processes
outside local mode with a strong secret, as production does."""

import os

os.environ.setdefault("SHOP_LOCAL_MODE", "true")
