"""Helpers for tests against the real stack (PostgreSQL, Kafka, Redis started by
`deploy/local/stack.sh up` or pointed at by the usual environment variables).

Isolation without Docker: every test session gets throwaway databases and a unique Kafka topic
prefix, so test runs (and parallel runs) never see each other's rows or events.

The helpers live in modules named for what they do; the names tests import are re-exported
here. The pytest fixtures built on them are in `shopkit.testing.plugin` (loaded through the
`pytest11` entry point of this package), the services as OS processes in
`shopkit.testing.processes`.
"""

from shopkit.testing.consumers import running_consumer
from shopkit.testing.events import collect, publish, publish_envelope, topic_reader
from shopkit.testing.peers import Answer, HttpPeer, PeerRequest
from shopkit.testing.problems import PROBLEM, assert_problem
from shopkit.testing.servers import free_port, running_server
from shopkit.testing.throwaway import (
    ADMIN_DSN,
    KAFKA,
    TOPIC_PREFIXES,
    asyncpg_dsn,
    delete_topics,
    temp_database,
    unique,
)
from shopkit.testing.tokens import ActAsUser, bearer
from shopkit.testing.waiting import eventually

__all__ = [
    "ADMIN_DSN",
    "KAFKA",
    "PROBLEM",
    "TOPIC_PREFIXES",
    "ActAsUser",
    "Answer",
    "HttpPeer",
    "PeerRequest",
    "asyncpg_dsn",
    "assert_problem",
    "bearer",
    "collect",
    "delete_topics",
    "eventually",
    "free_port",
    "publish",
    "publish_envelope",
    "running_consumer",
    "running_server",
    "temp_database",
    "topic_reader",
    "unique",
]
