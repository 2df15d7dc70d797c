"""POP3 sans-IO layer: framing limits, chunking independence, parsing, dot-stuffing, TOP."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailplat.services.pop3.protocol import (
    FLOOD,
    MAX_COMMAND_LINE,
    MAX_DISCARD,
    TOO_LONG,
    CommandError,
    Event,
    Line,
    LineReader,
    dot_stuff,
    multiline,
    parse_command,
    parse_number,
    top_of,
)
from mailplat.services.pop3.session import MAX_UIDL, pop_uid


def events(reader: LineReader) -> list[Event]:
    out = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    return out


def test_lines_split_on_crlf_and_bare_lf() -> None:
    reader = LineReader()
    reader.feed(b"USER a\r\nPASS b c\nNOOP")
    assert events(reader) == [Line(b"USER a"), Line(b"PASS b c")]
    reader.feed(b"\r\n")
    assert events(reader) == [Line(b"NOOP")]


def test_limit_is_255_octets_including_crlf() -> None:
    reader = LineReader()
    ok = b"x" * (MAX_COMMAND_LINE - 2) + b"\r\n"
    long = b"y" * (MAX_COMMAND_LINE - 1) + b"\r\n"
    reader.feed(ok + long + b"NOOP\r\n")
    assert events(reader) == [Line(ok[:-2]), TOO_LONG, Line(b"NOOP")]


def test_endless_line_is_a_flood() -> None:
    reader = LineReader()
    got: list[Event] = []
    for _ in range(MAX_DISCARD // 4096 + 2):
        reader.feed(b"z" * 4096)
        got += events(reader)
    assert got == [TOO_LONG, FLOOD]
    assert reader.pending() == 0


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_chunking_never_changes_events(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line.replace(b"\n", b"") + b"\r\n" for line in lines)
    whole = LineReader()
    whole.feed(stream)
    expected = events(whole)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    chunked = LineReader()
    got: list[Event] = []
    for piece in pieces:
        chunked.feed(piece)
        got += events(chunked)
    assert got == expected


def test_parse_command() -> None:
    assert parse_command(b"retr 1").verb == "RETR"
    assert parse_command(b"PASS a b  c").arg == "a b  c"
    assert parse_command(b"TOP 1 2").args == ["1", "2"]
    for bad in (b"", b" USER", b"US3R x", b"USER a\x00b", b"USER a\rb", b"USER \xff"):
        with pytest.raises(CommandError):
            parse_command(bad)


def test_parse_number() -> None:
    assert parse_number("12") == 12
    for bad in ("", "-1", "+1", "1.0", "x", "\u0661", "1" * 11):
        assert parse_number(bad) is None


def test_dot_stuffing() -> None:
    assert dot_stuff(b".a\r\nb\r\n..c\r\n.\r\n") == b"..a\r\nb\r\n...c\r\n..\r\n"
    assert multiline("+OK", b".\r\n") == b"+OK\r\n..\r\n.\r\n"
    assert multiline("+OK", b"") == b"+OK\r\n.\r\n"


def test_top_of() -> None:
    msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"
    assert top_of(msg, 0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top_of(msg, 2) == b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"
    assert top_of(msg, 99) == msg
    assert top_of(b"A: 1\r\n", 5) == b"A: 1\r\n"
    assert top_of(b"\r\nbody\r\n", 0) == b"\r\n"


def test_pop_uid_is_always_legal_and_stable() -> None:
    short = "1700000000.M1P2Q3.host,S=1,W=2"
    assert pop_uid(short) == short
    long = "1700000000.M1P2Q3." + "h" * 80 + ",S=1,W=2"
    assert pop_uid(long) == pop_uid(long)
    assert len(pop_uid(long)) <= MAX_UIDL
    assert all(0x21 <= ord(c) <= 0x7E for c in pop_uid("a b\u00e9"))
