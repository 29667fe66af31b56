"""The `wait` preference of RFC 7240 (`Prefer: wait=10`, possibly among others:
`Prefer: respond-async, wait=5`). Anything unparseable is ignored, as the RFC asks."""

from collections.abc import Iterable

_MAX_DIGITS = 6  # longer numbers are clamped without being converted


def requested_wait(prefer_headers: Iterable[str], max_wait_s: float) -> float | None:
    """Seconds to wait (clamped to `max_wait_s`), or None when no valid `wait` was asked for."""
    for header in prefer_headers:
        for preference in header.split(","):
            token = preference.split(";", 1)[0]
            name, has_value, value = token.partition("=")
            value = value.strip().strip('"')
            if name.strip().lower() != "wait" or not has_value:
                continue
            if not (value.isascii() and value.isdigit()):
                continue
            if len(value) > _MAX_DIGITS:
                return max_wait_s
            return min(float(value), max_wait_s)
    return None
