"""SMTP wire format, sans I/O: command lines, paths and parameters, DATA framing.

Input: bytes exactly as a client sent them. Output: verbs, parsed paths and
ESMTP parameters, or a `WireError` carrying the reply to send; for DATA, the
end of the data and the message bytes with the transparency dots removed.
All parsing of SMTP network input lives here, so it can be tested (and
property-tested) without a socket.

Rules kept:
- only <CRLF>.<CRLF> ends DATA (RFC 5321 §4.1.1.4); a bare CR or LF never
  does, so no input makes two messages of one (SMTP smuggling);
- paths follow RFC 5321 §4.1.2: `<>` is the null reverse-path, which every
  bounce uses and which must be accepted (§4.5.5); a quoted local part may
  hold spaces and `>`;
- ESMTP parameters are `keyword[=value]` (RFC 5321 §4.1.2); a repeated or
  unknown one gets 555 5.5.4 (RFC 5321 §4.1.1.11, RFC 3463);
- a non-ASCII path needs SMTPUTF8 (RFC 6531 §3.4, 553 5.6.7), and must be
  valid UTF-8.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from mailplat.core import replies as r

CRLF = b"\r\n"
END_OF_DATA = b"\r\n.\r\n"

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF;
# MAIL and RCPT may be longer by what their extensions add (§4.5.3.1.5).
MAX_COMMAND_LINE = 512
MAX_PATH_COMMAND_LINE = 1024
# RFC 4954 §4: an AUTH continuation line may be up to 12288 octets.
MAX_AUTH_LINE = 12288
# RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with CRLF, plus a
# transparency dot.
MAX_DATA_LINE = 1001

_KEYWORD = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE_OK = bytes(range(33, 127)).replace(b"=", b"")


class WireError(ValueError):
    """Input that breaks the protocol's syntax; `reply` says so to the client."""

    def __init__(self, reply: str, detail: str = "") -> None:
        super().__init__(detail or reply)
        self.reply = reply
        self.detail = detail or reply


def split_command(line: bytes) -> tuple[str, bytes]:
    """`VERB[ SP argument]` -> (upper-case verb, argument bytes); WireError if no verb."""
    verb, _, arg = line.partition(b" ")
    if not verb or not verb.isalpha() or not verb.isascii() or len(verb) > 16:
        raise WireError(r.S500_SYNTAX, "no command verb")
    return verb.decode("ascii").upper(), arg.strip(b" ")


@dataclass(frozen=True, slots=True)
class PathCommand:
    """A parsed MAIL FROM / RCPT TO: the path (no brackets; '' is <>) and its parameters."""

    path: str
    params: dict[str, str | None]
    utf8: bool  # the path holds non-ASCII characters


def parse_path_command(
    arg: bytes, keyword: bytes, *, smtputf8: bool | None, esmtp: bool
) -> PathCommand:
    """Parse `FROM:<path> params` (or `TO:<path> params`).

    `smtputf8` says whether the path may be non-ASCII; None (MAIL FROM) lets
    this command's own SMTPUTF8 parameter decide.
    """
    sender = keyword == b"FROM:"
    syntax = r.S501_SYNTAX_MAIL if sender else r.S501_SYNTAX_RCPT
    if arg[: len(keyword)].upper() != keyword:
        raise WireError(syntax, f"missing {keyword.decode()}")
    rest = arg[len(keyword) :].lstrip(b" ")
    if rest.startswith(b"<"):
        end = _closing_bracket(rest)
        if end < 0:
            raise WireError(syntax, "unterminated <path>")
        raw_path, tail = rest[1:end], rest[end + 1 :]
        if tail and not tail.startswith(b" "):
            raise WireError(syntax, "text after >")
    else:
        # Not RFC 5321, but common (and Postfix's default): a bare address.
        raw_path, _, tail = rest.partition(b" ")
        if not raw_path:
            raise WireError(syntax, "empty path")
    tokens = tail.split()
    if tokens and not esmtp:
        raise WireError(syntax, "parameters after HELO (not EHLO)")
    if not tail.isascii():
        raise WireError(r.S501_SYNTAX, "non-ASCII parameters")
    params = parse_params(tokens)
    utf8 = not raw_path.isascii()
    if utf8:
        allowed = ("SMTPUTF8" in params) if smtputf8 is None else smtputf8
        if not allowed:
            raise WireError(r.S553_NON_ASCII, "non-ASCII path without SMTPUTF8")
        try:
            path = raw_path.decode("utf-8")
        except UnicodeDecodeError:
            bad = r.S553_BAD_UTF8_SENDER if sender else r.S553_BAD_UTF8_RCPT
            raise WireError(bad, "malformed UTF-8 in path") from None
    else:
        path = raw_path.decode("ascii")
    return PathCommand(path=path, params=params, utf8=utf8)


def _closing_bracket(text: bytes) -> int:
    """Index of the `>` that closes a path starting at text[0] == '<', quotes respected."""
    quoted = escaped = False
    for i in range(1, len(text)):
        ch = text[i]
        if escaped:
            escaped = False
        elif ch == 0x5C and quoted:  # backslash
            escaped = True
        elif ch == 0x22:  # double quote
            quoted = not quoted
        elif ch == 0x3E and not quoted:  # >
            return i
    return -1


def parse_params(tokens: list[bytes]) -> dict[str, str | None]:
    """ESMTP `keyword[=value]` tokens -> {KEYWORD: value or None}; WireError on bad ones."""
    params: dict[str, str | None] = {}
    for token in tokens:
        key, eq, value = token.partition(b"=")
        if not _KEYWORD.fullmatch(key):
            raise WireError(r.S501_BAD_PARAMETER.format(name=_shown(key)), "bad parameter keyword")
        name = key.decode("ascii").upper()
        if name in params:
            raise WireError(r.S555_DUPLICATE_PARAMETER.format(name=name), f"duplicate {name}")
        if eq and (not value or value.strip(_VALUE_OK)):
            raise WireError(r.S501_BAD_PARAMETER.format(name=name), f"bad value for {name}")
        params[name] = value.decode("ascii") if eq else None
    return params


def _shown(raw: bytes) -> str:
    """A keyword safe to echo in a reply: printable ASCII, short."""
    text = raw.decode("ascii", "replace")
    return "".join(c if c.isalnum() or c == "-" else "?" for c in text[:32]) or "?"


# -- DATA ---------------------------------------------------------------------


def find_end_of_data(raw: bytearray | bytes, start: int) -> int:
    """Where <CRLF>.<CRLF> begins in `raw` (which starts with a virtual CRLF), or -1.

    `start` lets a caller resume after the bytes it already searched; the
    terminator may straddle the boundary, so it backs up four bytes.
    """
    return raw.find(END_OF_DATA, max(0, start - 4))


def unstuff(raw: bytes) -> bytes:
    """Message bytes from the DATA text: RFC 5321 §4.5.2 transparency dots removed.

    `raw` starts with the virtual CRLF that precedes the first line and ends
    with the CRLF of the last line; the result has neither the virtual CRLF
    nor the terminator.
    """
    return raw.replace(b"\r\n..", b"\r\n.")[2:]


def longest_line(data: bytes) -> int:
    """Length of the longest line of CRLF text, its CRLF included."""
    if len(data) < MAX_DATA_LINE:
        return len(data)
    best = 0
    pos = 0
    size = len(data)
    while pos < size:
        end = data.find(CRLF, pos)
        stop = size if end < 0 else end + 2
        if stop - pos > best:
            best = stop - pos
        pos = stop
    return best


def is_domain_or_literal(text: str) -> bool:
    """True for what RFC 5321 §4.1.1.1 allows in HELO/EHLO: a domain or an address literal."""
    if text.startswith("[") and text.endswith("]"):
        return bool(_LITERAL.fullmatch(text[1:-1]))
    if not text or len(text) > 255:
        return False
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    return all(_LABEL.fullmatch(label) for label in labels)


# Underscores are not in RFC 5321's grammar, but many real clients send them in
# host names (Windows machine names); they are harmless in a Received header.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_LITERAL = re.compile(r"(?:\d{1,3}(?:\.\d{1,3}){3})|(?:IPv6:[0-9A-Fa-f:.]{2,45})")


@functools.lru_cache(maxsize=1024)
def helo_for_header(text: str) -> tuple[str, str | None]:
    """What Received shows for a HELO argument: (domain-or-literal, or "unknown"; comment).

    A valid name stands as it is. Anything else is replaced by "unknown" and
    kept only as a comment of printable ASCII without parentheses or
    backslashes, so nothing a client sends can break the header.
    """
    if is_domain_or_literal(text):
        return text, None
    shown = "".join(c if 0x20 < ord(c) < 0x7F and c not in "()\\" else "?" for c in text[:64])
    return "unknown", f"helo={shown}" if shown else None
