"""Names in JSON bodies, and what their JSON Schema says of them.

A name is trimmed before it is checked (pydantic's `strip_whitespace`: the Unicode White_Space
characters), so `"  Coffee  "` is the 6-letter `"Coffee"` and `"   "` is empty. JSON Schema's
`minLength`/`maxLength` count the characters as sent, so they would document another rule (a
blank name valid, a padded one too long). `trimmed_text()` documents the rule as it is, as one
`pattern` (read alike by ECMA-262, Python and Rust regular expressions), which
libs/shopkit/tests/test_text.py checks against the validation itself:

    Name = Annotated[
        str,
        StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=100),
        trimmed_text(100),
    ]
"""

from typing import Final

from pydantic import WithJsonSchema

WHITE_SPACE: Final = (
    "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
"""what `strip_whitespace` takes off both ends (Unicode White_Space), as a character class body"""
CONTROL: Final = "\\x00-\\x1f\\x7f-\\x9f"
"""Unicode category Cc, as a character class body"""


def trimmed_pattern(max_length: int, *, control_characters: bool = True) -> str:
    """Text that is 1..`max_length` characters once trimmed of white space at both ends and,
    without `control_characters`, holds none within those."""
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    inner = "[\\s\\S]" if control_characters else f"[^{CONTROL}]"
    edge = f"[^{WHITE_SPACE}]" if control_characters else f"[^{WHITE_SPACE}{CONTROL}]"
    core = edge if max_length == 1 else f"{edge}(?:{inner}{{0,{max_length - 2}}}{edge})?"
    return f"^[{WHITE_SPACE}]*{core}[{WHITE_SPACE}]*$"


def trimmed_text(max_length: int, *, control_characters: bool = True) -> WithJsonSchema:
    """The JSON Schema of a trimmed name of 1..max_length characters (see the module)."""
    pattern = trimmed_pattern(max_length, control_characters=control_characters)
    return WithJsonSchema({"type": "string", "pattern": pattern}, mode="validation")
