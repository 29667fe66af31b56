"""Tests are a local run: the services' settings accept the public local default secrets
(SHOP_LOCAL_MODE, as deploy/local/run.sh sets it). The end-to-end harness runs its processes
outside local mode with a strong secret, as production does.

The fixtures the services' tests share, and the deletion of a session's throwaway topics, are
the pytest plugin of the shared lib (shopkit.testing.plugin, loaded by its entry point)."""

import os

import pytest

os.environ.setdefault("SHOP_LOCAL_MODE", "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chaos tests restart the shared Kafka and PostgreSQL: after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)
