"""The unit of work's one-statement write is compiled once: SQLAlchemy caches a statement only
when it has a cache key, which a multi-row VALUES never has (it was compiled again for every
order placed, 13 % of the order service's CPU)."""

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, func

from shopkit.uow import _all_in_one, _outbox

orders = Table(
    "orders",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("deadline_at", DateTime(timezone=True)),
)


def _writes(order_id: int, rows: int = 1) -> list[tuple[Table, list[dict[str, Any]]]]:
    order = [
        {"id": order_id + n, "deadline_at": func.now() + timedelta(seconds=order_id)}
        for n in range(rows)
    ]
    event = {
        "event_id": uuid.uuid4(),
        "topic": "t",
        "key": str(order_id),
        "event_type": "E",
        "envelope": {"n": order_id},
    }
    return [(orders, order), (_outbox, [event])]


def test_one_row_per_table_is_cached_once_for_every_value() -> None:
    first = _all_in_one(_writes(1))._generate_cache_key()
    second = _all_in_one(_writes(2))._generate_cache_key()
    assert first is not None
    assert second is not None
    assert first == second  # the same compiled statement, other parameters


def test_several_rows_still_go_in_one_statement() -> None:
    statement = _all_in_one(_writes(1, rows=3))
    sql = str(statement.compile())
    assert sql.count("INSERT INTO orders") == 1
    assert sql.count("INSERT INTO outbox") == 1
    assert ":param_3" in sql  # the third row
