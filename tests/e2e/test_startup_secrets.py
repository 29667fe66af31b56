"""A process refuses to start, outside local mode, with a secret anyone knows (the public local
default) or could guess (shorter than 32 bytes): nobody can mint tokens or sign deliveries for a
deployment someone forgot to configure. (Every other end-to-end test runs the services outside
local mode with strong secrets, as production does: they do start then.)"""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

STRONG = "s" * 48
CLEARED = ("SHOP_LOCAL_MODE", "JWT_SECRET", "DATA_PLATFORM_SECRET")


def _start(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**base, "LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("module", "env", "refused"),
    [
        ("point", {}, "JWT_SECRET is the public local default"),
        ("point", {"SHOP_LOCAL_MODE": "false"}, "JWT_SECRET is the public local default"),
        ("order", {"JWT_SECRET": "local-dev-secret"}, "JWT_SECRET is the public local default"),
        ("coupon", {"JWT_SECRET": "x" * 31}, "JWT_SECRET is shorter than 32 bytes"),
        ("order.relay", {"JWT_SECRET": STRONG}, "DATA_PLATFORM_SECRET is the public local default"),
        (
            "order.relay",
            {"JWT_SECRET": STRONG, "DATA_PLATFORM_SECRET": "short"},
            "DATA_PLATFORM_SECRET is shorter than 32 bytes",
        ),
        ("dataplatform_standin", {}, "DATA_PLATFORM_SECRET is the public local default"),
    ],
)
def test_a_process_with_a_knowable_secret_refuses_to_start(
    module: str, env: dict[str, str], refused: str
) -> None:
    run = _start(module, **env)
    assert run.returncode != 0, run.stdout + run.stderr
    assert refused in run.stdout + run.stderr
