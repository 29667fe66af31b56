"""`python -m dataplatform_standin`: serves the stand-in on STANDIN_HOST:STANDIN_PORT."""

import os

import uvicorn

from dataplatform_standin.app import DEFAULT_SECRET, create_app


def main() -> None:
    app = create_app(os.environ.get("DATA_PLATFORM_SECRET", DEFAULT_SECRET))
    uvicorn.run(
        app,
        host=os.environ.get("STANDIN_HOST", "127.0.0.1"),
        port=int(os.environ.get("STANDIN_PORT", "8090")),
        access_log=False,
    )


main()
