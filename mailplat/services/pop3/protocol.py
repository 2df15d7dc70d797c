"""POP3 wire format, sans I/O: framing, command parsing, reply formatting.

Input: raw bytes from the client, in chunks of any size (one write or one
byte at a time frame the same). Output: events (`Line`, `TOO_LONG`, `FLOOD`),
parsed `Command`s, and reply bytes.
Guarantees: memory per connection is bounded by the line limit whatever the
input; every emitted byte sequence is CRLF-terminated, and multi-line data is
dot-stuffed and ends with `.` CRLF (RFC 1939 §3), so no bare CR or LF and no
early terminator ever reaches a client.
All parsing of network input for POP3 lives here.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

CRLF = b"\r\n"

# RFC 2449 §4: a command line is at most 255 octets, including the CRLF.
MAX_COMMAND_LINE = 255
# RFC 5034 §4: a client whose initial response would overflow the command line
# sends it as a continuation line instead, so continuation lines must be longer.
MAX_AUTH_LINE = 2048
# While discarding an over-long line, give up on a client that never sends LF.
MAX_DISCARD = 64 * 1024

# RFC 2449 §3: keywords are printable ASCII letters, 3 or 4 long in the base
# protocol, up to 40 for extensions.
_VERB = re.compile(r"[A-Za-z]{1,40}")


class Signal(enum.Enum):
    """Framing events that are not a line."""

    TOO_LONG = "too-long"  # a line passed the limit; the rest up to LF is dropped
    FLOOD = "flood"  # MAX_DISCARD bytes without a line end: close the connection


TOO_LONG = Signal.TOO_LONG
FLOOD = Signal.FLOOD


@dataclass(frozen=True, slots=True)
class Line:
    """One received line without its terminator (CRLF, or a bare LF, which we tolerate)."""

    data: bytes


Event = Line | Signal


class LineReader:
    """Splits a byte stream into lines, one event at a time (pull, so the limit can change)."""

    def __init__(self, limit: int = MAX_COMMAND_LINE) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._discarding = False
        self._discarded = 0

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buf += data

    def pending(self) -> int:
        """Bytes held but not yet returned as an event."""
        return len(self._buf)

    def next_event(self) -> Event | None:
        """The next complete event, or None when more bytes are needed."""
        while True:
            if self._discarding:
                end = self._buf.find(b"\n")
                if end < 0:
                    self._discarded += len(self._buf)
                    self._buf.clear()
                    if self._discarded > MAX_DISCARD:
                        self._discarded = 0  # report once per MAX_DISCARD; the caller closes
                        return FLOOD
                    return None
                del self._buf[: end + 1]
                self._discarding = False
                continue
            # The LF must sit within `limit` octets, terminator included.
            end = self._buf.find(b"\n", 0, self.limit)
            if end >= 0:
                raw = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return Line(raw[:-1] if raw.endswith(b"\r") else raw)
            if len(self._buf) >= self.limit:
                # Drop only what is known to belong to the long line: the LF that
                # ends it, and any pipelined command after it, may already be here.
                self._discarding = True
                self._discarded = self.limit
                del self._buf[: self.limit]
                return TOO_LONG
            return None


class CommandError(ValueError):
    """A line that is not a well-formed command."""


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed command: upper-case verb and the raw argument text after one space."""

    verb: str
    arg: str

    @property
    def args(self) -> list[str]:
        """Arguments split on whitespace (for the numeric commands)."""
        return self.arg.split()


def parse_command(line: bytes) -> Command:
    """`VERB[ SP args]` -> Command; CommandError for NUL, CR, bad UTF-8 or a bad verb."""
    if b"\x00" in line or b"\r" in line:
        raise CommandError("control character in command line")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError("command line is not UTF-8") from exc
    verb, _, arg = text.partition(" ")
    if not _VERB.fullmatch(verb):
        raise CommandError("missing or malformed keyword")
    return Command(verb=verb.upper(), arg=arg)


def reply(text: str) -> bytes:
    """A one-line reply."""
    return text.encode("utf-8") + CRLF


def dot_stuff(data: bytes) -> bytes:
    """RFC 1939 §3: prefix '.' to every line that starts with '.'; `data` is CRLF text."""
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def multiline(first: str, body: bytes) -> bytes:
    """A multi-line reply: status line, dot-stuffed CRLF body, then '.' CRLF."""
    if body and not body.endswith(CRLF):
        body += CRLF
    return reply(first) + dot_stuff(body) + b"." + CRLF


def multiline_lines(first: str, lines: list[str]) -> bytes:
    """A multi-line reply made of text lines (CAPA, LIST, UIDL)."""
    return multiline(first, b"".join(reply(line) for line in lines))


def parse_number(text: str) -> int | None:
    """A message number or line count: plain decimal digits only (no sign, no spaces)."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    return int(text)


def top_of(message: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the blank line, then `lines` lines of the body.

    `message` is wire (CRLF) bytes; a message without a blank line is all header.
    """
    if message.startswith(CRLF):
        split = 0
    else:
        found = message.find(b"\r\n\r\n")
        if found < 0:
            return message
        split = found + 2
    head, body = message[: split + 2], message[split + 2 :]
    kept = body.split(CRLF)
    # split() leaves a trailing '' after the final CRLF; it is not a line.
    if kept and kept[-1] == b"":
        kept.pop()
    taken = kept[:lines]
    return head + b"".join(line + CRLF for line in taken)
