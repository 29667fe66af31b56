"""`python -m dataplatform_standin`: serves the stand-in on STANDIN_HOST:STANDIN_PORT."""

import os
import sys

import uvicorn

from dataplatform_standin.app import DEFAULT_SECRET, create_app

MIN_SECRET_BYTES = 32


def _secret() -> str:
    """DATA_PLATFORM_SECRET, refused when public or short outside local mode (as the relay does)."""
    secret = os.environ.get("DATA_PLATFORM_SECRET", DEFAULT_SECRET)
    local = os.environ.get("SHOP_LOCAL_MODE", "").lower() in {"1", "true", "yes", "on"}
    if not local and (secret == DEFAULT_SECRET or len(secret.encode()) < MIN_SECRET_BYTES):
        sys.exit(
            f"DATA_PLATFORM_SECRET is the public local default or shorter than "
            f"{MIN_SECRET_BYTES} bytes: set a longer one (or SHOP_LOCAL_MODE=true for a local run)"
        )
    return secret


def main() -> None:
    uvicorn.run(
        create_app(_secret()),
        host=os.environ.get("STANDIN_HOST", "127.0.0.1"),
        port=int(os.environ.get("STANDIN_PORT", "8090")),
        access_log=False,
    )


main()
