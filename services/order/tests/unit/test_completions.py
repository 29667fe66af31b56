"""The in-process half of the NOTIFY wake-up: futures registered per order."""

import uuid

from order.adapters.completions import OrderCompletions


def completions() -> OrderCompletions:
    return OrderCompletions()


async def test_a_notification_wakes_every_request_watching_that_order_only() -> None:
    listener = completions()
    order, other = uuid.uuid4(), uuid.uuid4()
    with listener.watch(order) as first, listener.watch(order) as second:
        with listener.watch(other) as unrelated:
            listener.on_notify(str(order))
            assert first.done()
            assert second.done()
            assert not unrelated.done()
    assert listener.waiting == 0


async def test_a_reconnect_wakes_every_watcher_to_read_again() -> None:
    listener = completions()
    with listener.watch(uuid.uuid4()) as a, listener.watch(uuid.uuid4()) as b:
        listener.wake_all()
        assert a.done()
        assert b.done()


async def test_a_malformed_payload_is_ignored() -> None:
    listener = completions()
    with listener.watch(uuid.uuid4()) as woken:
        listener.on_notify("not-a-uuid")
        assert not woken.done()


async def test_waking_twice_is_harmless() -> None:
    listener = completions()
    order = uuid.uuid4()
    with listener.watch(order) as woken:
        listener.wake(order)
        listener.wake(order)
        assert woken.done()
