"""Integers in JSON bodies as JSON Schema counts them: `1.0` is the integer 1 (a number with a
zero fractional part is an integer, whatever its spelling), so a request a client validated
against our OpenAPI document is not refused for it.

`Annotated[int, Field(strict=True, ge=…, le=…), Integral]`: strict, so that neither a string,
nor a bool, nor a fraction is taken for an integer, and a whole float is read as the int it
spells first. Only up to 2^53 − 1: past it a float no longer spells one integer (9007199254740993.0
reads as …992), so such a value is refused as not an integer rather than read as another one;
an integer that large is written without a fraction. The bounds apply to the int read.
The FastAPI route and its fast path validate the same model, so both read it alike."""

from typing import Any, Final

from pydantic import BeforeValidator

EXACT_FLOAT_INTEGER: Final = 2**53 - 1
"""The largest magnitude at which every float that is whole spells exactly one integer."""


def whole_float_as_int(value: Any) -> Any:
    """A float with no fractional part within ±(2^53 − 1) as its int; anything else as it came
    (the strict int validation then refuses it)."""
    if type(value) is float and value.is_integer() and abs(value) <= EXACT_FLOAT_INTEGER:
        return int(value)
    return value


Integral: Final = BeforeValidator(whole_float_as_int)
"""The metadata that lets a strict int field take a whole float (`1.0`)."""
