"""The saga steps against real Kafka and PostgreSQL: the other services' answers in, the
order's state and its OrderPaid / OrderFailed out."""

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from shop_contracts import (
    CouponRejected,
    Envelope,
    Event,
    ExcludedLine,
    ExclusionReason,
    PaymentFailed,
    StockRejected,
    topics,
)
from shopkit.testing import eventually, publish_envelope

if TYPE_CHECKING:
    from ..conftest import Saga


async def test_an_order_is_paid_when_stock_price_and_payment_come_in(
    saga: "Saga", user_id: int
) -> None:
    order = await saga.place(user_id, [(1, 2), (2, 1)], user_coupon_id=9)
    await saga.send(
        saga.reserved(order, {1: 3_000, 2: 10_000}),
        saga.priced(order, 16_000, discount=1_000),
        saga.paid(order, 15_000),
    )
    final = await saga.ended(order["order_id"])
    assert final["status"] == "PAID"
    assert final["failure_reason"] is None
    assert (final["subtotal"], final["discount"], final["total"]) == (16_000, 1_000, 15_000)
    assert [(line["unit_price"], line["status"]) for line in final["lines"]] == [
        (3_000, "ORDERED"),
        (10_000, "ORDERED"),
    ]
    assert final["paid_at"] is not None

    paid = await saga.published(order["order_id"], "OrderPaid")
    assert paid["lines"] == [
        {"product_id": 1, "name": "product 1", "quantity": 2, "unit_price": 3_000},
        {"product_id": 2, "name": "product 2", "quantity": 1, "unit_price": 10_000},
    ]
    assert (paid["subtotal"], paid["discount"], paid["total"]) == (16_000, 1_000, 15_000)
    assert paid["user_id"] == user_id
    assert paid["user_coupon_id"] == 9
    created = await saga.published(order["order_id"], "OrderCreated")
    assert created["lines"] == [
        {"product_id": 1, "quantity": 2},
        {"product_id": 2, "quantity": 1},
    ]
    assert [t for t, _ in await saga.outbox(order["order_id"])] == ["OrderCreated", "OrderPaid"]

    metrics = (await saga.client.get("/metrics")).text
    assert 'saga_orders_total{reason="none",status="PAID"}' in metrics
    assert 'saga_duration_seconds_count{status="PAID"}' in metrics
    assert "orders_created_total" in metrics


async def test_a_line_out_of_stock_is_excluded_and_the_rest_is_paid(
    saga: "Saga", user_id: int
) -> None:
    order = await saga.place(user_id, [(1, 1), (2, 3)])
    await saga.send(
        saga.reserved(order, {2: 500}, excluded={1: "OUT_OF_STOCK"}),
        saga.priced(order, 1_500),
        saga.paid(order, 1_500),
    )
    final = await saga.ended(order["order_id"])
    assert final["status"] == "PAID"
    assert final["lines"] == [
        {
            "product_id": 1,
            "quantity": 1,
            "unit_price": None,
            "status": "EXCLUDED",
            "excluded_reason": "OUT_OF_STOCK",
        },
        {
            "product_id": 2,
            "quantity": 3,
            "unit_price": 500,
            "status": "ORDERED",
            "excluded_reason": None,
        },
    ]
    [(_, paid)] = [e for e in await saga.outbox(order["order_id"]) if e[0] == "OrderPaid"]
    assert [line["product_id"] for line in paid["lines"]] == [2]


def _stock_rejected(saga: "Saga", order: dict[str, Any]) -> list[Event]:
    return [
        StockRejected(
            order_id=order["order_id"],
            user_id=order["user_id"],
            excluded=[
                ExcludedLine(product_id=1, quantity=1, reason=ExclusionReason.OUT_OF_STOCK),
                ExcludedLine(product_id=2, quantity=1, reason=ExclusionReason.PRODUCT_NOT_FOUND),
            ],
        )
    ]


def _coupon_rejected(saga: "Saga", order: dict[str, Any]) -> list[Event]:
    return [
        saga.reserved(order, {1: 100, 2: 200}),
        CouponRejected(
            order_id=order["order_id"],
            user_id=order["user_id"],
            user_coupon_id=order["user_coupon_id"],
            detail="expired",
        ),
    ]


def _payment_failed(saga: "Saga", order: dict[str, Any]) -> list[Event]:
    return [
        saga.reserved(order, {1: 100, 2: 200}),
        saga.priced(order, 300),
        PaymentFailed(order_id=order["order_id"], user_id=order["user_id"], amount=300),
    ]


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (_stock_rejected, "OUT_OF_STOCK"),
        (_coupon_rejected, "COUPON_INVALID"),
        (_payment_failed, "INSUFFICIENT_BALANCE"),
    ],
    ids=["stock-rejected", "coupon-rejected", "payment-failed"],
)
async def test_a_rejection_fails_the_order_with_its_reason_and_emits_order_failed(
    saga: "Saga", user_id: int, answers: Any, reason: str
) -> None:
    order = await saga.place(user_id, [(1, 1), (2, 1)], user_coupon_id=4)
    await saga.send(*answers(saga, order))
    final = await saga.ended(order["order_id"])
    assert final["status"] == "FAILED"
    assert final["failure_reason"] == reason
    assert final["paid_at"] is None
    failed = await saga.published(order["order_id"], "OrderFailed")
    assert failed == {
        "order_id": order["order_id"],
        "user_id": user_id,
        "reason": reason,
        "user_coupon_id": 4,
    }


async def test_all_lines_rejected_are_shown_excluded_with_their_reasons(
    saga: "Saga", user_id: int
) -> None:
    order = await saga.place(user_id, [(1, 1), (2, 1)])
    await saga.send(*_stock_rejected(saga, order))
    final = await saga.ended(order["order_id"])
    assert [(line["status"], line["excluded_reason"]) for line in final["lines"]] == [
        ("EXCLUDED", "OUT_OF_STOCK"),
        ("EXCLUDED", "PRODUCT_NOT_FOUND"),
    ]


async def test_facts_arriving_in_reverse_order_still_pay_the_order_once_all_are_in(
    saga: "Saga", user_id: int
) -> None:
    order = await saga.place(user_id, [(7, 2)])
    # the payment is handled before the price and the reservation it depends on
    [payment] = await saga.send(saga.paid(order, 1_800))
    await saga.processed(payment)
    pending = await saga.order(order["order_id"])
    assert pending["status"] == "PENDING"
    assert pending["total"] is None

    [price] = await saga.send(saga.priced(order, 2_000, discount=200))
    await saga.processed(price)
    pending = await saga.order(order["order_id"])
    assert pending["status"] == "PENDING"
    assert (pending["subtotal"], pending["discount"], pending["total"]) == (2_000, 200, 1_800)
    assert [t for t, _ in await saga.outbox(order["order_id"])] == ["OrderCreated"]

    await saga.send(saga.reserved(order, {7: 1_000}))
    final = await saga.ended(order["order_id"])
    assert final["status"] == "PAID"
    assert final["lines"][0]["unit_price"] == 1_000
    paid = await saga.published(order["order_id"], "OrderPaid")
    assert paid["lines"] == [
        {"product_id": 7, "name": "product 7", "quantity": 2, "unit_price": 1_000}
    ]
    assert paid["total"] == 1_800


async def test_redelivered_and_repeated_events_pay_once_and_emit_one_order_paid(
    saga: "Saga", user_id: int
) -> None:
    order = await saga.place(user_id, [(3, 1)])
    await saga.send(saga.reserved(order, {3: 700}), saga.priced(order, 700))
    payment = Envelope.wrap(saga.paid(order, 700), producer="point")
    repeated = Envelope.wrap(saga.paid(order, 700), producer="point")  # same fact, new event id
    # one partition (same key), so once the last one is handled the others were too
    await publish_envelope(saga.settings.topic(topics.PAYMENT_EVENTS), payment, payment, repeated)
    await saga.processed(payment, repeated)
    final = await saga.order(order["order_id"])
    assert final["status"] == "PAID"
    assert [t for t, _ in await saga.outbox(order["order_id"])] == ["OrderCreated", "OrderPaid"]


async def test_an_answer_for_an_ended_order_changes_nothing(saga: "Saga", user_id: int) -> None:
    order = await saga.place(user_id, [(1, 1), (2, 1)], user_coupon_id=4)
    await saga.send(*_coupon_rejected(saga, order))
    failed = await saga.ended(order["order_id"])
    late = await saga.send(saga.priced(order, 300), saga.paid(order, 300))
    await saga.processed(*late)
    assert await saga.order(order["order_id"]) == failed
    assert [t for t, _ in await saga.outbox(order["order_id"])] == [
        "OrderCreated",
        "OrderFailed",
    ]


async def test_an_event_for_an_order_it_does_not_know_is_skipped(saga: "Saga") -> None:
    stranger = {"order_id": "8e0e4a54-4f7b-4bde-9bb6-2f1b7a9e43f1", "user_id": 1}
    [payment] = await saga.send(saga.paid({**stranger, "user_coupon_id": None}, 1))
    await saga.processed(payment)
    r = await saga.client.get(f"/orders/{stranger['order_id']}")
    assert r.status_code == 404


async def test_prefer_wait_answers_201_with_the_final_order_when_the_saga_ends_meanwhile(
    saga: "Saga", user_id: int
) -> None:
    request = asyncio.create_task(
        saga.client.post(
            "/orders",
            json={"user_id": user_id, "items": [{"product_id": 5, "quantity": 1}]},
            headers={"Prefer": "wait=25"},
        )
    )

    async def placed() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await saga.client.get(f"/users/{user_id}/orders")).json()[
            "items"
        ]
        return items

    [order] = await eventually(placed)
    assert not request.done()
    await saga.send(saga.reserved(order, {5: 900}), saga.priced(order, 900), saga.paid(order, 900))
    r = await request
    assert r.status_code == 201
    assert r.json()["status"] == "PAID"
    assert r.json()["total"] == 900
    assert r.headers["Preference-Applied"] == "wait=25"


async def test_an_idempotent_retry_with_prefer_wait_returns_the_same_order_once_ended(
    saga: "Saga", user_id: int
) -> None:
    headers = {"Idempotency-Key": "retry-after-timeout"}
    order = await saga.place(user_id, [(6, 1)], headers=headers)
    await saga.send(saga.reserved(order, {6: 50}), saga.priced(order, 50), saga.paid(order, 50))
    r = await saga.client.post(
        "/orders",
        json={"user_id": user_id, "items": [{"product_id": 6, "quantity": 1}]},
        headers={**headers, "Prefer": "wait=25"},
    )
    assert r.status_code == 201
    assert r.headers["Idempotent-Replayed"] == "true"
    assert r.json()["order_id"] == order["order_id"]
    assert r.json()["status"] == "PAID"
