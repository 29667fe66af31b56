"""The point service under the shared fixtures of shopkit.testing.plugin."""

from point.config import Settings
from point.main import MIGRATIONS, create_app
from shopkit.testing.plugin import service_fixtures
from shopkit.testing.service import ServiceUnderTest

globals().update(
    service_fixtures(ServiceUnderTest("point", Settings, create_app, MIGRATIONS, connections=500))
)
