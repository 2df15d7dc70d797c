"""A message split into its header fields and body, byte for byte, for signing and checking.

Input: message bytes with CRLF line endings (what smtp_in accepted and the
spool keeps). Output: the fields in order, each as (lower-case name, the raw
field with its continuation lines and final CRLF), and the body after the
empty line. Joining the fields, the empty line and the body gives the input
back exactly, so a field can be removed or added without touching the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import getaddresses


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # lower case, no colon
    raw: bytes  # "Name: value\r\n\tcontinued\r\n"

    @property
    def value(self) -> str:
        """The unfolded value (RFC 5322 §2.2.3), without the name and the colon."""
        text = self.raw.split(b":", 1)[1] if b":" in self.raw else b""
        return b" ".join(text.split(b"\r\n")).strip().decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Message:
    fields: tuple[Field, ...]
    body: bytes
    has_separator: bool  # False: the message had no empty line (headers only)

    def get_all(self, name: str) -> list[Field]:
        key = name.lower()
        return [f for f in self.fields if f.name == key]

    def count(self, name: str) -> int:
        return len(self.get_all(name))

    def to_bytes(self) -> bytes:
        head = b"".join(f.raw for f in self.fields)
        return head + (b"\r\n" + self.body if self.has_separator else b"")


def split(data: bytes) -> Message:
    """The fields and body of a CRLF message (a line without a colon ends the header)."""
    fields: list[Field] = []
    pos = 0
    size = len(data)
    while pos < size:
        if data.startswith(b"\r\n", pos):
            return Message(tuple(fields), data[pos + 2 :], True)
        end = data.find(b"\r\n", pos)
        end = size if end < 0 else end + 2
        # Continuation lines start with white space (RFC 5322 §2.2.3).
        while end < size and data[end : end + 1] in (b" ", b"\t"):
            nxt = data.find(b"\r\n", end)
            end = size if nxt < 0 else nxt + 2
        raw = data[pos:end]
        colon = raw.find(b":")
        if colon <= 0:
            # Not a header field: what follows is body (a malformed message).
            return Message(tuple(fields), data[pos:], True)
        fields.append(Field(raw[:colon].strip().lower().decode("ascii", "replace"), raw))
        pos = end
    return Message(tuple(fields), b"", False)


_SIMPLE_FROM = re.compile(r'^(?:[^<>@",;:()]*<)?[^<>@\s",;:()]+@([A-Za-z0-9.-]+)>?$')


def from_domains(message: Message) -> list[str]:
    """The domains of the From: addresses (RFC 7489 §6.6.1 wants exactly one)."""
    values = [f.value for f in message.get_all("from")]
    if len(values) == 1:
        simple = _SIMPLE_FROM.match(values[0].strip())
        if simple:  # `Name <a@b>` or `a@b`: the usual case, without the full parser
            return [simple.group(1).rstrip(".").lower()]
    out: list[str] = []
    for _, addr in getaddresses(values):
        if "@" in addr:
            out.append(addr.rsplit("@", 1)[1].strip().rstrip(".").lower())
    return out
