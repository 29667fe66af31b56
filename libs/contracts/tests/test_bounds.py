"""Amounts and quantities are bounded in the events as in the HTTP API: an event carrying a value
the database cannot hold (outside int64) or the business never makes (a quantity over
MAX_QUANTITY) is refused when it is read, so the consumer dead-letters it at once instead of
failing in the database."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from shop_contracts import (
    INT64_MAX,
    MAX_QUANTITY,
    Envelope,
    OrderCreated,
    OrderLine,
    OrderPaid,
    OrderPriced,
    PaidLine,
    PaymentCompleted,
    PaymentFailed,
    ReservedLine,
)
from shop_contracts.export import SCHEMA_DIR

ORDER = uuid.uuid4()


def paid(*, amount: int = 10, quantity: int = 1) -> OrderPaid:
    return OrderPaid(
        order_id=ORDER,
        user_id=1,
        lines=[PaidLine(product_id=1, name="p", quantity=quantity, unit_price=amount)],
        subtotal=amount,
        discount=0,
        total=amount,
        paid_at=datetime.now(UTC),
    )


AMOUNTS = {
    "PaymentCompleted.amount": lambda v: PaymentCompleted(
        order_id=ORDER, user_id=1, amount=v, balance_after=0
    ),
    "PaymentCompleted.balance_after": lambda v: PaymentCompleted(
        order_id=ORDER, user_id=1, amount=1, balance_after=v
    ),
    "PaymentFailed.amount": lambda v: PaymentFailed(order_id=ORDER, user_id=1, amount=v),
    "OrderPriced.subtotal": lambda v: OrderPriced(
        order_id=ORDER, user_id=1, subtotal=v, discount=0, total=0
    ),
    "OrderPriced.discount": lambda v: OrderPriced(
        order_id=ORDER, user_id=1, subtotal=0, discount=v, total=0
    ),
    "OrderPriced.total": lambda v: OrderPriced(
        order_id=ORDER, user_id=1, subtotal=0, discount=0, total=v
    ),
    "ReservedLine.unit_price": lambda v: ReservedLine(
        product_id=1, name="p", quantity=1, unit_price=v
    ),
    "OrderPaid.amounts": lambda v: paid(amount=v),
}
QUANTITIES = {
    "OrderLine.quantity": lambda q: OrderLine(product_id=1, quantity=q),
    "ReservedLine.quantity": lambda q: ReservedLine(
        product_id=1, name="p", quantity=q, unit_price=1
    ),
    "PaidLine.quantity": lambda q: paid(quantity=q),
}


@pytest.mark.parametrize("make", AMOUNTS.values(), ids=AMOUNTS.keys())
def test_an_amount_is_within_int64(make: Any) -> None:
    make(0)
    make(INT64_MAX)
    for outside in (INT64_MAX + 1, 2**64, -1):
        with pytest.raises(ValidationError):
            make(outside)


@pytest.mark.parametrize("make", QUANTITIES.values(), ids=QUANTITIES.keys())
def test_a_quantity_is_within_the_order_api_s_bound(make: Any) -> None:
    make(1)
    make(MAX_QUANTITY)
    for outside in (MAX_QUANTITY + 1, INT64_MAX + 1, 0):
        with pytest.raises(ValidationError):
            make(outside)


def test_an_event_with_an_amount_outside_int64_is_refused_when_read() -> None:
    """As a consumer reads it (shopkit.messaging.reading): the envelope parses, its event not."""
    good = Envelope.wrap(
        PaymentCompleted(order_id=ORDER, user_id=1, amount=5, balance_after=0), producer="point"
    )
    raw = json.loads(good.model_dump_json())
    raw["payload"]["amount"] = 2**63
    envelope = Envelope.model_validate_json(json.dumps(raw))
    with pytest.raises(ValidationError, match="amount"):
        envelope.event()


def test_an_order_with_a_quantity_over_the_bound_is_refused_when_read() -> None:
    good = Envelope.wrap(
        OrderCreated(order_id=ORDER, user_id=1, lines=[OrderLine(product_id=1, quantity=2)]),
        producer="order",
    )
    raw = json.loads(good.model_dump_json())
    raw["payload"]["lines"][0]["quantity"] = MAX_QUANTITY + 1
    with pytest.raises(ValidationError, match="quantity"):
        Envelope.model_validate_json(json.dumps(raw)).event()


def test_the_committed_schemas_state_the_bounds() -> None:
    """A producer in another language sees them in the JSON Schemas too."""
    schema = json.loads((SCHEMA_DIR / "StockReserved.v1.json").read_text())
    line = schema["$defs"]["ReservedLine"]["properties"]
    assert (line["quantity"]["minimum"], line["quantity"]["maximum"]) == (1, MAX_QUANTITY)
    assert (line["unit_price"]["minimum"], line["unit_price"]["maximum"]) == (0, INT64_MAX)
