"""Which messages a consumer reads at all: its own event types, and of the dead letters replayed
to the topic only those replayed for it."""

import pytest

from shopkit.messaging.reading import wanted

PAID = frozenset({"OrderPaid"})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([("event_type", b"OrderPaid")], True, id="its-event-type"),
        pytest.param([("event_type", b"OrderCreated")], False, id="another-event-type"),
        pytest.param([], True, id="no-header-read-to-find-out"),
        pytest.param(None, True, id="no-headers-at-all"),
        pytest.param(
            [("event_type", b"OrderPaid"), ("dlq.replayed-for", b"ranking")],
            True,
            id="replayed-for-it",
        ),
        pytest.param(
            [("event_type", b"OrderPaid"), ("dlq.replayed-for", b"relay")],
            False,
            id="replayed-for-another-consumer",
        ),
        pytest.param(
            [("dlq.replayed-for", b"relay"), ("event_type", b"OrderPaid")],
            False,
            id="replayed-for-another-header-first",
        ),
        pytest.param(
            [("event_type", b"OrderPaid"), ("dlq.replayed-from", b"0:7")],
            True,
            id="replayed-by-an-older-tool-without-its-consumer",
        ),
        pytest.param(
            {"event_type": b"OrderPaid", "dlq.replayed-for": b"relay"}, False, id="a-mapping"
        ),
    ],
)
def test_wanted(headers: object, expected: bool) -> None:
    assert wanted(headers, PAID, "ranking") is expected
