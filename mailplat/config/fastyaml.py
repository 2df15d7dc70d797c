"""Read the plain block YAML that config files are made of, line by line, fast.

Input: the text of one YAML file. Output: the same Python data the libyaml
builder in yamlread.py gives (dicts, lists, scalars resolved by YAML 1.2's
core schema), or NOT_SIMPLE when the text uses anything outside a small,
common subset. The caller then parses it with libyaml, which also reports
syntax errors and positions; this reader never reports an error itself.

The subset: `key: value` block mappings, `- item` block sequences (also
`- key: value` and sequences at their key's indent), one-line flow sequences
and mappings of plain or quoted scalars, plain, single- and double-quoted
one-line scalars (double-quoted without escapes), comments and blank lines.
Anything else (anchors, aliases, tags, block scalars, multi-line scalars,
escapes, duplicate keys, tabs, CR, unusual characters, directives, several
documents) is NOT_SIMPLE. A generated site of 10,000 files reads about five
times faster this way than through libyaml's events; a property test keeps
both readers equal on every text this one accepts.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final


class _NotSimple:
    """Marker: the text is outside the subset; parse it with libyaml."""

    def __repr__(self) -> str:
        return "NOT_SIMPLE"


NOT_SIMPLE: Final = _NotSimple()


class _Bail(Exception):
    pass


_INT = re.compile(r"^[-+]?[0-9]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_TRUE = frozenset(("true", "True", "TRUE"))
_FALSE = frozenset(("false", "False", "FALSE"))


def resolve_plain(value: str) -> Any:
    """YAML 1.2 core schema resolution of a plain scalar."""
    if value in _NULLS:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value[0].isalpha():
        return value  # the common case, a name or an address: no number starts so
    if _INT.match(value):
        return int(value)
    if _HEX.match(value):
        return int(value, 16)
    if _OCT.match(value):
        return int(value[2:], 8)
    if _FLOAT.match(value):
        return float(value)
    if value in (".inf", "+.inf", ".Inf", "+.Inf"):
        return math.inf
    if value in ("-.inf", "-.Inf"):
        return -math.inf
    return value


# Characters libyaml reads as printable text and never as a line break
# (YAML 1.1 §5.1; NEL, LS and PS break lines there, so they are left out).
_UNUSUAL = re.compile(
    "[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
# A plain key: word characters and the few others names and domains use.
_KEY = re.compile(r"([^\W_]|_)[\w.@+/-]*")
# `key:` then a space and the value, or the end of the line.
_KEY_LINE = re.compile(r"([^\W_]|_)[\w.@+/-]*:(?= |$)")
# A plain scalar may not start with an indicator (YAML 1.2 §7.3.3).
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_FLOW_PLAIN_BAD = re.compile("[,\\[\\]{}#'\":]")
# The common key: ASCII letter first (so never a number), then name characters.
_COMMON_KEY = re.compile(r"([A-Za-z][\w.@+/-]*):(?: +|$)")
_WORDS = frozenset(("null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE"))


def parse_simple(text: str) -> Any:
    """The data of `text`, or NOT_SIMPLE when it is outside the subset."""
    if _UNUSUAL.search(text):
        return NOT_SIMPLE
    try:
        return _Reader(text.split("\n")).document()
    except _Bail:
        return NOT_SIMPLE


def _plain(value: str, flow: bool) -> Any:
    """A plain scalar, resolved; bail on anything libyaml could read otherwise."""
    if not value or value[0] in _INDICATORS:
        raise _Bail
    if flow:
        if _FLOW_PLAIN_BAD.search(value):
            raise _Bail
    elif ": " in value or value.endswith(":") or " #" in value:
        raise _Bail
    return resolve_plain(value)


def _quoted(rest: str) -> tuple[str, str]:
    """A quoted scalar at the start of rest; returns (value, what follows it)."""
    quote = rest[0]
    if quote == '"':
        end = rest.find('"', 1)
        if end < 0:
            raise _Bail
        value = rest[1:end]
        if "\\" in value:
            raise _Bail
        return value, rest[end + 1 :]
    pos = 1
    parts = []
    while True:
        end = rest.find("'", pos)
        if end < 0:
            raise _Bail
        parts.append(rest[pos:end])
        if rest.startswith("'", end + 1):
            parts.append("'")
            pos = end + 2
            continue
        return "".join(parts), rest[end + 1 :]


def _end_of_value(after: str) -> None:
    """What follows a complete value on its line: nothing, or ` # comment`."""
    if after and not (after[0] == " " and after.lstrip(" ")[:1] in ("", "#")):
        raise _Bail


def _flow_items(inner: str) -> list[str | tuple[str]]:
    """Split the inside of [...] or {...}: plain texts, and quoted ones as 1-tuples."""
    items: list[str | tuple[str]] = []
    rest = inner.strip(" ")
    if not rest:
        return items
    while True:
        if rest[:1] in ("'", '"'):
            value, rest = _quoted(rest)
            items.append((value,))
            rest = rest.lstrip(" ")
        else:
            cut = rest.find(",")
            item = (rest if cut < 0 else rest[:cut]).rstrip(" ")
            if not item:
                raise _Bail
            items.append(item)
            rest = "" if cut < 0 else rest[cut:]
        if not rest:
            return items
        if rest[0] != ",":
            raise _Bail
        rest = rest[1:].lstrip(" ")
        if not rest:
            return items  # a trailing comma is allowed


def _flow_scalar(item: str | tuple[str]) -> Any:
    return item[0] if isinstance(item, tuple) else _plain(item, flow=True)


def _value(rest: str) -> Any:
    """A complete one-line value (the text after `key: ` or `- `)."""
    first = rest[0]
    if first in ("'", '"'):
        value, after = _quoted(rest)
        _end_of_value(after)
        return value
    if first == "[":
        end = rest.rfind("]")
        if end < 0:
            raise _Bail
        inner = rest[1:end]
        if any(c in inner for c in "[]{}#"):
            raise _Bail
        _end_of_value(rest[end + 1 :])
        return [_flow_scalar(i) for i in _flow_items(inner)]
    if first == "{":
        end = rest.rfind("}")
        if end < 0:
            raise _Bail
        inner = rest[1:end]
        if any(c in inner for c in "[]{}#'\""):
            raise _Bail
        _end_of_value(rest[end + 1 :])
        out: dict[Any, Any] = {}
        for item in _flow_items(inner):
            assert isinstance(item, str)  # quotes were refused above
            key, sep, value = item.partition(": ")
            if not sep or not _KEY.fullmatch(key) or ":" in value:
                raise _Bail
            k = resolve_plain(key)
            if k in out:
                raise _Bail
            out[k] = _plain(value.strip(" "), flow=True)
        return out
    cut = rest.find(" #")
    if cut >= 0:
        rest = rest[:cut]
    return _plain(rest.rstrip(" "), flow=False)


class _Reader:
    """Block structure by indentation: a stack of open mappings and sequences."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def document(self) -> Any:
        # The open blocks: `stack` holds the outer frames (indent, container,
        # is a list); the innermost is kept in locals, the hot path of a loop
        # over every line. A pending key waits for a nested block below it.
        stack: list[tuple[int, Any, bool]] = []
        top_indent, top_list = -1, False
        top: Any = None
        pending: tuple[dict[Any, Any], Any, int] | None = None
        root: Any = None
        common_key = _COMMON_KEY.match
        words = _WORDS
        for line in self.lines:
            body = line.lstrip(" ")
            if not body or body[0] == "#":
                continue
            indent = len(line) - len(body)
            is_item = body[0] == "-" and (len(body) == 1 or body[1] == " ")
            if pending is not None:
                parent, key, at = pending
                pending = None
                if indent > at or (indent == at and is_item):
                    child: Any = [] if is_item else {}
                    parent[key] = child
                    stack.append((top_indent, top, top_list))
                    top_indent, top, top_list = indent, child, is_item
                else:
                    parent[key] = None
            elif root is None:
                root = [] if is_item else {}
                top_indent, top, top_list = indent, root, is_item
            # Close the blocks this line is left of.
            while indent < top_indent:
                if not stack:
                    raise _Bail
                top_indent, top, top_list = stack.pop()
            if indent != top_indent:
                raise _Bail  # a continuation line, or indentation YAML reads otherwise
            if top_list and not is_item:
                # The end of a sequence written at its key's indent.
                if not stack:
                    raise _Bail
                top_indent, top, top_list = stack.pop()
                if top_indent != indent or top_list:
                    raise _Bail
            container = top
            if is_item:
                if not top_list:
                    raise _Bail
                rest = body[1:].lstrip(" ")
                if not rest or rest[0] in ("#", "-"):
                    raise _Bail  # `-` alone (the item below it), or nested `- -`
                m = _KEY_LINE.match(rest) if rest[0] not in ("'", '"', "[", "{") else None
                if m is None:
                    container.append(_value(rest))
                    continue
                # `- key: value`: a mapping whose keys sit at this column.
                mapping: dict[Any, Any] = {}
                container.append(mapping)
                indent = indent + (len(body) - len(rest))
                stack.append((top_indent, top, top_list))
                top_indent, top, top_list = indent, mapping, False
                container, body = mapping, rest
            m = common_key(body)
            if m is None:
                pending = self._entry(container, body, indent)
                continue
            # The common `key: value` line, inline (most of a config's lines).
            key = m.group(1)
            if key in words:
                key = resolve_plain(key)
            if key in container:
                raise _Bail  # libyaml's path reports the duplicate with its line
            rest = body[m.end() :]
            if not rest or rest[0] == "#":
                container[key] = None
                pending = (container, key, indent)
                continue
            first = rest[0]
            if first == '"':
                end = rest.find('"', 1)
                if end < 0:
                    raise _Bail
                value = rest[1:end]
                if "\\" in value:
                    raise _Bail
                if end + 1 < len(rest):
                    _end_of_value(rest[end + 1 :])
                container[key] = value
            elif first.isalpha():
                cut = rest.find(" #")
                text = (rest if cut < 0 else rest[:cut]).rstrip(" ")
                if ": " in text or text[-1] == ":":
                    raise _Bail
                container[key] = resolve_plain(text) if text in words else text
            else:
                container[key] = _value(rest)
        if pending is not None:
            pending[0][pending[1]] = None
        return root

    @staticmethod
    def _entry(
        mapping: dict[Any, Any], body: str, indent: int
    ) -> tuple[dict[Any, Any], Any, int] | None:
        """One `key: value` line into mapping; returns the key if its value follows below."""
        if body[0] in ("'", '"'):
            key, after = _quoted(body)
            if not after.startswith(":") or after[1:2] not in ("", " "):
                raise _Bail
            rest = after[1:].lstrip(" ")
        else:
            m = _KEY_LINE.match(body)
            if m is None:
                raise _Bail
            key = resolve_plain(body[: m.end() - 1])
            rest = body[m.end() :].lstrip(" ")
        if key in mapping:
            raise _Bail  # libyaml's path reports the duplicate with its line
        if not rest or rest[0] == "#":
            mapping[key] = None
            return mapping, key, indent
        if rest[0] == "-" and (len(rest) == 1 or rest[1] == " "):
            raise _Bail
        mapping[key] = _value(rest)
        return None
