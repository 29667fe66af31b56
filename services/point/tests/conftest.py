"""The point service under the shared fixtures of shopkit.testing.plugin."""

import pytest

from point.config import Settings
from point.main import MIGRATIONS, create_app
from shopkit.testing.service import ServiceUnderTest


@pytest.fixture(scope="session")
def service() -> ServiceUnderTest:
    return ServiceUnderTest("point", Settings, create_app, MIGRATIONS, connections=500)
