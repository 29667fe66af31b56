"""Tests are a local run: the services' settings accept the public local default secrets
(SHOP_LOCAL_MODE, as deploy/local/run.sh sets it). The end-to-end harness runs its processes
outside local mode with a strong secret, as production does."""

import asyncio
import os

import pytest

os.environ.setdefault("SHOP_LOCAL_MODE", "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chaos tests restart the shared Kafka and PostgreSQL: after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The session's throwaway topics go with it (a broker kept for days would otherwise carry
    every run's partitions)."""
    from shopkit.testing import TOPIC_PREFIXES, delete_topics

    try:
        deleted = asyncio.run(delete_topics(TOPIC_PREFIXES))
    except Exception as exc:  # never fail a run over housekeeping
        session.config.get_terminal_writer().line(f"test topics not deleted: {exc!r}")
        return
    if deleted:
        session.config.get_terminal_writer().line(f"deleted {deleted} test topics")
