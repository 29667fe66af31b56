"""The pattern a trimmed name is documented with takes exactly the names its validation takes
(shopkit.http.text): a client that checks a name against the document is never refused for it."""

import random
import re
import unicodedata
from typing import Annotated

import pytest
from pydantic import AfterValidator, StringConstraints, TypeAdapter, ValidationError

from shopkit.http.text import trimmed_pattern, trimmed_text

MAX = 8


def _refuse_control(text: str) -> str:
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ValueError("control character")
    return text


Trimmed = TypeAdapter(
    Annotated[
        str,
        StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=MAX),
        trimmed_text(MAX),
    ]
)
Clean = TypeAdapter(
    Annotated[
        str,
        StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=MAX),
        AfterValidator(_refuse_control),
        trimmed_text(MAX, control_characters=False),
    ]
)
EDGES = " \t\n\x0b\x0c\r\x1c\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
CHARACTERS = EDGES + "\x00\x1b\x7f\x9f" + "ab\u00e9\u4e2d\U0001f600"


def _texts(count: int) -> list[str]:
    """Texts of the characters the rule turns on, and any others a JSON body can carry as
    UTF-8 (no lone surrogate, which pydantic refuses whatever it is)."""
    chance = random.Random(20260311)

    def character() -> str:
        if chance.random() < 0.7:
            return chance.choice(CHARACTERS)
        code = chance.randrange(0x110000)
        return chr(code) if not 0xD800 <= code <= 0xDFFF else "x"

    return ["".join(character() for _ in range(chance.randrange(MAX + 5))) for _ in range(count)]


def _takes(adapter: TypeAdapter[str], text: str) -> bool:
    try:
        adapter.validate_python(text)
    except ValidationError:
        return False
    return True


def _documented(adapter: TypeAdapter[str], text: str) -> bool:
    pattern = adapter.json_schema()["pattern"]
    return re.search(pattern, text) is not None


@pytest.mark.parametrize("adapter", [Trimmed, Clean], ids=["any", "no control characters"])
@pytest.mark.parametrize(
    "text",
    ["a", " a ", "  ", "", "a" * MAX, f"  {'a' * MAX}\n", "a" * (MAX + 1), "a\nb", "\x1ca\x1c"],
)
def test_the_pattern_takes_what_the_validation_takes(adapter: TypeAdapter[str], text: str) -> None:
    assert _documented(adapter, text) == _takes(adapter, text)


def test_the_pattern_takes_what_the_validation_takes_whatever_the_text() -> None:
    for text in _texts(5000):
        for adapter in (Trimmed, Clean):
            assert _documented(adapter, text) == _takes(adapter, text), (adapter, text)


def test_the_document_says_nothing_else_of_the_text() -> None:
    assert Trimmed.json_schema() == {"type": "string", "pattern": trimmed_pattern(MAX)}


def test_a_name_of_one_character() -> None:
    assert re.search(trimmed_pattern(1), " x ")
    assert not re.search(trimmed_pattern(1), "xy")
