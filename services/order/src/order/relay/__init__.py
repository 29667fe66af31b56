"""The data-platform relay: a worker process of the order service (`python -m order.relay`).

It forwards every `OrderPaid` to the external data platform, once per event: signed POST with
the event id as Idempotency-Key, retried with backoff, dead-lettered after the last attempt.
It only reads Kafka; payment never waits on it.
"""
