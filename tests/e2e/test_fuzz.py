"""Contract fuzzing: schemathesis, with every one of its checks, against each service's OpenAPI
document, sent to the services running as in production (processes, strong secrets, users
confined), directly and through the gateway. Whatever comes in: no 5xx, every answer is one the
document lists (status, media type, headers, body schema, problem code), a request the document
allows is taken and one it forbids is refused, authentication is enforced, a user cannot read
what is another's, a 405 names the allowed methods (tests/e2e/schemathesis.toml).

schemathesis runs as the CLI CI would run it (`st run --checks all`), one run per service, with
the project's config, hooks and auth file; a run that finds anything fails the test with the
report. 30 examples per operation and mode keep it inside `make test`."""

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from shopkit.http.auth import mint
from shopkit.testing.processes import System, start_ranking_api

from .gateway import ROOT, Gateway, upstreams
from .test_gateway import SERVICES as ROUTED

pytestmark = pytest.mark.e2e

FUZZED = ("point", "product", "coupon", "order", "ranking")
CONFIG = Path(__file__).with_name("schemathesis.toml")
OUTSIDER = 7_340_912_384_771_293
"""The `user` of the auth file: a user id no generated request is about (its reads of the
admin's answers must all be refused)."""


@pytest.fixture(scope="module")
async def fuzzed_system(system: System) -> AsyncIterator[System]:
    """The e2e system and the ranking API (on the same secrets)."""
    async with AsyncExitStack() as stack:
        await start_ranking_api(stack, system, {})
        yield system


@pytest.fixture(scope="module")
def auth_file(fuzzed_system: System, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Web Fuzzing Commons auth document: an admin and a user, tokens signed for the run."""
    secret = fuzzed_system.secrets.jwt
    tokens = {"admin": mint(secret, "0", "admin"), "user": mint(secret, str(OUTSIDER), "user")}
    path = tmp_path_factory.mktemp("fuzz-auth") / "auth.json"
    entries = [
        {"name": name, "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {token}"}]}
        for name, token in tokens.items()
    ]
    path.write_text(json.dumps({"auth": entries}))
    return path


@pytest.fixture(scope="module")
async def gateway_url(
    fuzzed_system: System, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    routes = upstreams(fuzzed_system, ROUTED, absent_port=1)
    async with Gateway(
        tmp_path_factory.mktemp("gateway-fuzz"), routes, jwt_secret=fuzzed_system.secrets.jwt
    ) as gateway:
        yield gateway.url


@pytest.fixture(params=FUZZED)
def service(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def schemathesis_run(
    document: str, auth_file: Path, workdir: Path, base_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`st run --checks all` with the project's config, on `document` (sent to `base_url`)."""
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG)]
    command += ["run", document, "--checks", "all", "--no-color"]
    if base_url is not None:
        command += ["--url", base_url]
    env = {
        **os.environ,
        "SHOP_FUZZ_AUTH": str(auth_file),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True)


def _found_nothing(run: subprocess.CompletedProcess[str]) -> None:
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "No issues found" in report, report


def test_every_answer_of_each_service_is_as_documented(
    fuzzed_system: System, service: str, auth_file: Path, tmp_path: Path
) -> None:
    url = fuzzed_system.url(service)
    _found_nothing(schemathesis_run(f"{url}/openapi.json", auth_file, tmp_path))


def test_through_the_gateway_too(
    fuzzed_system: System, service: str, auth_file: Path, tmp_path: Path, gateway_url: str
) -> None:
    url = fuzzed_system.url(service)
    _found_nothing(schemathesis_run(f"{url}/openapi.json", auth_file, tmp_path, gateway_url))
