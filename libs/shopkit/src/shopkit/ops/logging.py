"""Structured JSON logs. `bind(order_id=…, request_id=…)` adds fields to every later line of
the current task (contextvars), so a saga step's logs all carry its order id."""

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    # One line per event, written at once: a killed process must not lose its last lines.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _trace_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through stdlib logging: keep them quiet and in the same stream.
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(name)s %(message)s")


def _trace_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """The current trace's id on every line logged inside one (when tracing is on)."""
    from shopkit.ops import tracing

    if tracing.enabled() and (trace_id := tracing.current_trace_id()) is not None:
        event.setdefault("trace_id", trace_id)
    return event


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Bind fields (order_id, event_id, …) to every log line inside the block."""
    tokens = structlog.contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
