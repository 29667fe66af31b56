"""Exports a JSON Schema per event (envelope with its typed payload) and an AsyncAPI document.

`python -m shop_contracts.export` writes them under libs/contracts/; `--check` exits non-zero
when the committed files differ from what the code would write, or when a change is breaking.
Output is deterministic (sorted keys, fixed indentation) so the committed files diff cleanly.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shop_contracts import topics
from shop_contracts.compat import breaking_changes
from shop_contracts.envelope import Envelope
from shop_contracts.events import EVENT_TYPES, Event

CONTRACTS_DIR = Path(__file__).resolve().parents[2]
SCHEMA_DIR = CONTRACTS_DIR / "schemas"
ASYNCAPI_PATH = CONTRACTS_DIR / "asyncapi.json"

# Who publishes and who consumes each event: the saga's choreography in one table.
FLOW: dict[str, tuple[str, list[str]]] = {
    "OrderCreated": ("order", ["product"]),
    "StockReserved": ("product", ["coupon", "order"]),
    "StockRejected": ("product", ["order"]),
    "OrderPriced": ("coupon", ["point", "order"]),
    "CouponRejected": ("coupon", ["order"]),
    "PaymentCompleted": ("point", ["order"]),
    "PaymentFailed": ("point", ["order"]),
    "OrderPaid": ("order", ["ranking", "order-dataplatform-relay"]),
    "OrderFailed": ("order", ["product", "coupon", "point"]),
}


def event_schema(model: type[Event]) -> dict[str, Any]:
    """The envelope's schema with `payload` replaced by the event's own schema."""
    envelope = Envelope.model_json_schema()
    payload = model.model_json_schema()
    defs = {**envelope.pop("$defs", {}), **payload.pop("$defs", {})}
    envelope["title"] = f"{model.__name__} v{model.version}"
    envelope["properties"]["event_type"] = {"const": model.__name__, "type": "string"}
    envelope["properties"]["version"] = {"const": model.version, "type": "integer"}
    envelope["properties"]["payload"] = payload
    envelope["x-topic"] = model.topic
    envelope["x-key"] = "order_id"
    if defs:
        envelope["$defs"] = defs
    return envelope


def schemas() -> dict[str, dict[str, Any]]:
    return {f"{name}.v{m.version}.json": event_schema(m) for name, m in EVENT_TYPES.items()}


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, model in EVENT_TYPES.items():
        producer, consumers = FLOW[name]
        messages[name] = {
            "name": name,
            "title": name,
            "summary": (model.__doc__ or name).strip().splitlines()[0],
            "contentType": "application/json",
            "headers": {"type": "object", "description": "none; the envelope carries metadata"},
            "bindings": {"kafka": {"key": {"type": "string", "format": "uuid"}}},
            "payload": {"$ref": f"./schemas/{name}.v{model.version}.json"},
            "x-producer": producer,
            "x-consumers": consumers,
        }
        channel = channels.setdefault(
            model.topic, {"address": model.topic, "messages": {}, "bindings": {"kafka": {}}}
        )
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        operations[f"publish{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{model.topic}"},
            "messages": [{"$ref": f"#/channels/{model.topic}/messages/{name}"}],
            "x-service": producer,
        }
    channels[topics.DEAD_LETTER] = {
        "address": topics.DEAD_LETTER,
        "description": "Events a consumer gave up on after its retries; headers say why.",
        "messages": {},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Shop order saga",
            "version": "1.0.0",
            "description": (
                "Choreographed order saga. Every message value is an Envelope (JSON), "
                "every key is the order id."
            ),
        },
        "defaultContentType": "application/json",
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {"messages": dict(sorted(messages.items()))},
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[Path, str]:
    files = {SCHEMA_DIR / name: dumps(doc) for name, doc in schemas().items()}
    files[ASYNCAPI_PATH] = dumps(asyncapi())
    return files


def check() -> list[str]:
    problems: list[str] = []
    for path, text in rendered().items():
        if not path.exists():
            problems.append(f"{path.name}: not exported yet (run `make contracts`)")
            continue
        committed = path.read_text()
        if path.parent == SCHEMA_DIR:
            problems += [
                f"{path.name}: {p}"
                for p in breaking_changes(json.loads(committed), json.loads(text))
            ]
        if committed != text:
            problems.append(f"{path.name}: differs from the code (run `make contracts`)")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args()
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)  # noqa: T201
        return 1 if problems else 0
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
