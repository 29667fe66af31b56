"""The Redis admission gate's scripts against the real Redis, and its rebuild from PostgreSQL."""

import asyncio
import random
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind

from coupon.adapters.gate import Admission, Install, IssuanceGate
from coupon.config import Settings
from coupon.service.issuing import rebuild_gate
from shopkit.ops import tracing
from shopkit.ops.runtime import Runtime


@pytest.fixture
def coupon_id() -> int:
    """A coupon id no service has: these tests drive the gate by hand."""
    return random.randint(2**60, 2**62)


async def test_admits_each_user_once_until_sold_out(gate: IssuanceGate, coupon_id: int) -> None:
    assert await gate.install(coupon_id, 2, []) is Install.INSTALLED
    assert await gate.admit(coupon_id, 1) is Admission.ADMITTED
    assert await gate.admit(coupon_id, 1) is Admission.ALREADY_ISSUED
    assert await gate.admit(coupon_id, 2) is Admission.ADMITTED
    assert await gate.admit(coupon_id, 3) is Admission.SOLD_OUT
    assert await gate.admit(coupon_id, 2) is Admission.ALREADY_ISSUED
    assert await gate.state(coupon_id) == ({"total": 2, "count": 2}, {1, 2})


async def test_undo_frees_the_place_and_only_once(gate: IssuanceGate, coupon_id: int) -> None:
    await gate.install(coupon_id, 1, [])
    assert await gate.admit(coupon_id, 1) is Admission.ADMITTED
    assert await gate.undo(coupon_id, 1) is True
    assert await gate.undo(coupon_id, 1) is False
    assert await gate.state(coupon_id) == ({"total": 1, "count": 0}, set())
    assert await gate.admit(coupon_id, 2) is Admission.ADMITTED


async def test_a_missing_gate_admits_no_one(gate: IssuanceGate, coupon_id: int) -> None:
    assert await gate.admit(coupon_id, 1) is Admission.NEEDS_REBUILD
    assert await gate.undo(coupon_id, 1) is False
    assert await gate.confirm(coupon_id, [1]) == 0
    assert await gate.state(coupon_id) == ({}, set())


async def test_a_gate_that_lost_one_of_its_keys_admits_no_one(
    gate: IssuanceGate, coupon_id: int
) -> None:
    meta, issued = gate.keys(coupon_id)
    await gate.install(coupon_id, 10, [1, 2, 3])
    await gate.redis.delete(issued)  # evicted alone: the count no longer matches
    assert await gate.is_intact(coupon_id) is False
    assert await gate.admit(coupon_id, 4) is Admission.NEEDS_REBUILD
    await gate.install(coupon_id, 10, [1, 2, 3])
    await gate.redis.delete(meta)
    assert await gate.admit(coupon_id, 4) is Admission.NEEDS_REBUILD


async def test_install_never_overwrites_an_intact_gate(gate: IssuanceGate, coupon_id: int) -> None:
    assert await gate.install(coupon_id, 5, [1, 2]) is Install.INSTALLED
    assert await gate.admit(coupon_id, 3) is Admission.ADMITTED
    assert await gate.install(coupon_id, 5, [1, 2]) is Install.ALREADY_INTACT
    assert await gate.state(coupon_id) == ({"total": 5, "count": 3}, {1, 2, 3})


async def test_install_loads_large_holder_lists(gate: IssuanceGate, coupon_id: int) -> None:
    holders = range(1, 12_001)  # more than one staging chunk
    assert await gate.install(coupon_id, 20_000, holders) is Install.INSTALLED
    meta, admitted = await gate.state(coupon_id)
    assert meta == {"total": 20_000, "count": 12_000}
    assert admitted == set(holders)
    assert await gate.admit(coupon_id, 5) is Admission.ALREADY_ISSUED


async def test_confirm_adds_only_missing_users(gate: IssuanceGate, coupon_id: int) -> None:
    await gate.install(coupon_id, 5, [1])
    assert await gate.confirm(coupon_id, [1, 2, 3]) == 2
    assert await gate.state(coupon_id) == ({"total": 5, "count": 3}, {1, 2, 3})


class CountingGate(IssuanceGate):
    """A gate of its own (own in-process rebuild lock), counting the installs that wrote."""

    installed: list[Install]

    async def install(self, coupon_id: int, total: int, holders: Iterable[int]) -> Install:
        outcome = await super().install(coupon_id, total, holders)
        self.installed.append(outcome)
        return outcome


async def test_concurrent_rebuilds_load_the_database_once(
    client: httpx.AsyncClient,
    new_coupon: Callable[..., Any],
    settings: Settings,
    runtime: Runtime,
    gate: IssuanceGate,
    db: asyncpg.Connection,
) -> None:
    coupon = await new_coupon(total_quantity=50)
    for user in range(1, 31):
        await client.post(f"/coupons/{coupon['id']}/issue", json={"user_id": user})
    await gate.forget(coupon["id"])

    # Twenty "processes" (each its own gate client and in-process lock) rebuild at once.
    installed: list[Install] = []
    gates = []
    for _ in range(20):
        other = CountingGate.connect(settings)
        other.installed = installed
        gates.append(other)

    async def rebuild(g: IssuanceGate) -> None:
        await rebuild_gate(runtime.unit_of_work, g, coupon["id"])

    try:
        await asyncio.gather(*(rebuild(g) for g in gates))
    finally:
        await asyncio.gather(*(g.close() for g in gates))

    assert installed.count(Install.INSTALLED) == 1
    assert installed.count(Install.STAGING_LOST) == 0
    holders = {
        r["user_id"]
        for r in await db.fetch(
            "SELECT user_id FROM user_coupons WHERE coupon_id = $1", coupon["id"]
        )
    }
    assert holders == set(range(1, 31))
    assert await gate.state(coupon["id"]) == ({"total": 50, "count": 30}, holders)


async def test_a_gate_call_is_a_span_of_a_recorded_trace_only(
    gate: IssuanceGate, coupon_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a sampled request the admission is a client span (`redis admit`) under it; inside
    an unsampled one, or outside any, no span is made."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing("coupon-test", exporter=exporter)
    try:
        await gate.install(coupon_id, 5, [])
        with tracing.tracer.start_as_current_span("POST /coupons/{id}/issue") as request:
            assert await gate.admit(coupon_id, 1) is Admission.ADMITTED
        unsampled = NonRecordingSpan(
            SpanContext(random.getrandbits(128), random.getrandbits(64), is_remote=True)
        )
        with trace.use_span(unsampled):
            assert await gate.admit(coupon_id, 2) is Admission.ADMITTED
    finally:
        tracing.shutdown_tracing()
    redis_spans = [s for s in exporter.get_finished_spans() if s.name.startswith("redis ")]
    assert [s.name for s in redis_spans] == ["redis admit"]
    [admit] = redis_spans
    assert admit.kind == SpanKind.CLIENT
    assert admit.parent is not None
    assert admit.parent.span_id == request.get_span_context().span_id
    assert admit.attributes is not None
    assert admit.attributes["db.system"] == "redis"
