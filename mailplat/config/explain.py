"""pydantic's error records, said in our words: what was expected, what was found.

Input: one entry of `ValidationError.errors()`. Output: an Explained, either
an expected-phrase ("a whole number", "true or false") that the loader joins
with the other alternatives of a union into "expected a whole number or
'unlimited', got 'lots'", or a finished message from one of our validators
(with the hint it carries in its context). Pure: no I/O, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# pydantic error type -> what the admin should have written. Types not listed
# fall back to pydantic's text, stripped of its "Input should be" phrasing.
_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "list_type": "a list (lines starting with '- ')",
    "tuple_type": "a list (lines starting with '- ')",
    "set_type": "a list (lines starting with '- ')",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
}

_HINTS = {
    "string_type": "quote the value to make it text, e.g. '123'",
    "bool_type": "write true or false",
    "bool_parsing": "write true or false",
}


@dataclass(frozen=True, slots=True)
class Explained:
    """One error record in our words."""

    expected: str = ""  # a phrase to join with the union's other alternatives
    message: str = ""  # a finished message (bounds, our own validators)
    hint: str = ""


def shown(value: Any) -> str:
    """A YAML value as the admin wrote it (strings quoted, null and booleans as YAML spells them)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def explain(err: Any) -> Explained:
    """Explain one pydantic error record (a dict with type, msg, input, ctx)."""
    kind = str(err["type"])
    ctx: dict[str, Any] = err.get("ctx") or {}
    if kind in _EXPECTED:
        return Explained(expected=_EXPECTED[kind], hint=_HINTS.get(kind, ""))
    if kind == "literal_error":
        return Explained(expected=str(ctx.get("expected", "")))
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        word = "at least" if kind == "greater_than_equal" else "more than"
        return Explained(message=f"must be {word} {bound}, got {shown(err.get('input'))}")
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        word = "at most" if kind == "less_than_equal" else "less than"
        return Explained(message=f"must be {word} {bound}, got {shown(err.get('input'))}")
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return Explained(message=f"needs at least {n} item{'s' if n != 1 else ''}, got none")
    if kind == "too_long":
        n = ctx.get("max_length", 0)
        return Explained(message=f"allows at most {n} items")
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if msg.startswith("Input should be "):
        return Explained(expected=msg[len("Input should be ") :])
    return Explained(message=msg, hint=str(ctx.get("hint", "")))


def combine(items: list[Explained], value: Any) -> tuple[str, str]:
    """One message and hint for every error record at one place."""
    expected = list(dict.fromkeys(e.expected for e in items if e.expected))
    messages = list(dict.fromkeys(e.message for e in items if e.message))
    hints = list(dict.fromkeys(e.hint for e in items if e.hint))
    parts = []
    if expected:
        parts.append(f"expected {' or '.join(expected)}, got {shown(value)}")
    parts += messages
    return "; ".join(parts), "; ".join(hints)
