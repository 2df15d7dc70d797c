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
