"""Property tests for address parsing: str() and parse round-trip, keys are stable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailplat.core.address import Address, parse_address, try_parse
from mailplat.core.errors import AddressError

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
atom = st.text(alphabet=ATEXT, min_size=1, max_size=10)
dot_atom = st.lists(atom, min_size=1, max_size=3).map(".".join)
quoted = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12
)
label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z")
domain = st.lists(label, min_size=1, max_size=4).map(".".join)


@given(local=dot_atom, dom=domain)
def test_dot_atom_round_trip(local: str, dom: str) -> None:
    addr = parse_address(f"{local}@{dom}")
    assert addr == Address(local, dom)
    assert parse_address(str(addr)) == addr
    assert parse_address(f"<{addr}>") == addr


@given(local=quoted, dom=domain)
def test_quoted_local_round_trip(local: str, dom: str) -> None:
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    addr = parse_address(f'"{escaped}"@{dom}')
    assert addr.local == local
    assert parse_address(str(addr)) == addr
    assert addr.domain == dom  # the domain is after the last unquoted @, always


@given(local=dot_atom, dom=domain)
def test_key_folds_case_only(local: str, dom: str) -> None:
    a = parse_address(f"{local}@{dom.upper()}")
    b = parse_address(f"{local.lower()}@{dom}")
    assert a.key == b.key


@given(st.text(max_size=40))
def test_parse_never_crashes(text: str) -> None:
    try:
        addr = parse_address(text)
    except AddressError:
        return
    assert parse_address(str(addr)) == addr


def test_percent_hack_is_literal() -> None:
    addr = try_parse("friend%elsewhere.test@example.test")
    assert addr is not None and addr.domain == "example.test" and addr.has_route_chars


@pytest.mark.parametrize("bad", ["", "a", "@x.test", "a@", "a@-x.test", "a b@x.test", "a@x..test"])
def test_bad_addresses_are_refused(bad: str) -> None:
    assert try_parse(bad) is None
