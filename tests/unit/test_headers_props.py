"""Property test: the fast bare-CR/LF check agrees with its regex definition."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from mailplat.message.headers import has_bare_line_ending

DEFINITION = re.compile(rb"\r(?!\n)|(?<!\r)\n")


@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"."]), max_size=40))
def test_bare_line_ending_check_matches_its_definition(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert has_bare_line_ending(data) == (DEFINITION.search(data) is not None)


HOP = re.compile(rb"^(received|delivered-to):", re.IGNORECASE)


def _hops_by_definition(data: bytes) -> int:
    """RFC 5321 §6.3 loop count as defined: header lines starting with either name."""
    from mailplat.message.headers import header_lines

    return sum(1 for line in header_lines(data) if HOP.match(line))


@given(
    st.lists(
        st.sampled_from(
            [
                b"Received: x",
                b"received:y",
                b"RECEIVED: z",
                b"Delivered-To: a",
                b" Received: no",
                b"X-Received: no",
                b"Subject: Received: no",
                b"\tcontinued",
            ]
        ),
        max_size=12,
    ),
    st.sampled_from([b"", b"Received: in the body\r\n"]),
)
def test_hop_count_matches_its_definition(lines: list[bytes], body: bytes) -> None:
    from mailplat.message.headers import hop_count

    data = b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body
    assert hop_count(data) == _hops_by_definition(data)
