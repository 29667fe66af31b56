import copy
import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from shop_contracts import EVENT_TYPES, Envelope, OrderCreated, OrderLine, StockRejected
from shop_contracts.compat import breaking_changes
from shop_contracts.events import Event
from shop_contracts.export import SCHEMA_DIR, check, event_schema, rendered


def committed(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text())


def test_export_is_deterministic() -> None:
    assert rendered() == rendered()


def test_committed_contracts_match_the_code_and_nothing_breaks() -> None:
    assert check() == []


def test_every_event_has_a_committed_schema() -> None:
    names = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert names == {f"{n}.v{m.version}.json" for n, m in EVENT_TYPES.items()}


def test_removing_a_field_is_breaking() -> None:
    class OrderCreatedWithoutCoupon(Event):
        topic = OrderCreated.topic
        user_id: int
        lines: list[OrderLine]

    OrderCreatedWithoutCoupon.__name__ = "OrderCreated"
    problems = breaking_changes(
        committed("OrderCreated.v1.json"), event_schema(OrderCreatedWithoutCoupon)
    )
    assert any("user_coupon_id: removed" in p for p in problems)


def test_changing_a_type_is_breaking() -> None:
    schema = committed("OrderCreated.v1.json")
    changed = copy.deepcopy(schema)
    changed["properties"]["payload"]["properties"]["user_id"] = {"type": "string"}
    assert any("user_id: type changed" in p for p in breaking_changes(schema, changed))


def test_a_new_required_field_is_breaking_and_a_new_optional_one_is_not() -> None:
    schema = committed("StockRejected.v1.json")
    optional = copy.deepcopy(schema)
    optional["properties"]["payload"]["properties"]["note"] = {"type": "string"}
    assert breaking_changes(schema, optional) == []
    required = copy.deepcopy(optional)
    required["properties"]["payload"]["required"].append("note")
    assert any("note: new required field" in p for p in breaking_changes(schema, required))


def test_a_new_enum_value_is_breaking() -> None:
    schema = committed("OrderFailed.v1.json")
    changed = copy.deepcopy(schema)
    changed["$defs"]["FailureReason"]["enum"].append("FRAUD")
    assert any("enum values added" in p for p in breaking_changes(schema, changed))


def test_the_committed_schemas_validate_real_events() -> None:
    """The envelope round-trips through JSON and refuses unknown fields."""
    event = StockRejected(order_id=uuid.uuid4(), user_id=1, excluded=[])
    envelope = Envelope.wrap(event, producer="product")
    again = Envelope.model_validate_json(envelope.model_dump_json())
    assert again.event() == event
    with pytest.raises(ValidationError):
        StockRejected.model_validate({**event.model_dump(mode="json"), "surprise": 1})
