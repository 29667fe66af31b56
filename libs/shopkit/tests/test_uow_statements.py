"""The unit of work's one-statement write is compiled once per shape and run by the driver:
building and compiling it through SQLAlchemy for every order placed was a fifth of the order
service's CPU (and a multi-row VALUES, which has no cache key, was compiled every time)."""

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table

from shopkit.database.uow import DbNow, _all_in_one, _outbox, _parameters

orders = Table(
    "orders",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("deadline_at", DateTime(timezone=True)),
)


def _writes(order_id: int, rows: int = 1) -> list[tuple[Table, list[dict[str, Any]]]]:
    order = [
        {"id": order_id + n, "deadline_at": DbNow(timedelta(seconds=order_id))} for n in range(rows)
    ]
    event = {
        "event_id": uuid.uuid4(),
        "topic": "t",
        "key": str(order_id),
        "event_type": "E",
        "envelope": {"n": order_id},
    }
    return [(orders, order), (_outbox, [event])]


def test_a_shape_is_compiled_once_for_every_value() -> None:
    first, second = _writes(1), _writes(2)
    assert _all_in_one(first) is _all_in_one(second)  # the same statement, other parameters
    assert _parameters(second)["p0_0_id"] == 2
    assert _parameters(second)["p0_0_deadline_at"] == timedelta(seconds=2)
    assert _all_in_one(_writes(1, rows=2)) is not _all_in_one(first)  # another shape


def test_several_rows_still_go_in_one_statement_with_the_database_clock() -> None:
    writes = _writes(1, rows=3)
    prepared = _all_in_one(writes)
    assert prepared.sql.count("INSERT INTO orders") == 1
    assert prepared.sql.count("INSERT INTO outbox") == 1
    assert prepared.sql.count("now()") == 3  # each row's deadline on the database's clock
    arguments = prepared.args(_parameters(writes))
    assert len(arguments) == 3 * 2 + 5  # every value is a parameter, none compiled in
    assert timedelta(seconds=1) in arguments
