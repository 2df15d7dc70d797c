"""The config models' fast address check gives what parse_address gives."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailplat.config.models.base import simple_domain, simple_email
from mailplat.core.address import normalise_domain, parse_address
from mailplat.core.errors import AddressError

chars = st.sampled_from(list("aZ09.-_+@'`!#$%&*/=?^{|}~ \"\\()<>[]:,é\x00xX"))


@settings(max_examples=3000, deadline=None)
@given(st.text(chars, min_size=1, max_size=30))
@example("Alice.Smith@Example.TEST")
@example("a@b")
@example("a@-b.test")
@example("a..b@c.test")
@example("a@b.test.")
@example("x" * 65 + "@b.test")
def test_fast_path_equals_parse_address(text: str) -> None:
    fast = simple_email(text)
    if fast is None:
        return
    try:
        slow = str(parse_address(text))
    except AddressError as exc:
        raise AssertionError(f"{text!r} passed the fast path but parse_address refuses it") from exc
    assert fast == slow


def test_the_common_forms_take_the_fast_path() -> None:
    assert simple_email("m0@po00001.test") == "m0@po00001.test"
    assert simple_email("Alias1@PO1.Test") == "Alias1@po1.test"
    assert simple_email("not an address") is None


@settings(max_examples=2000, deadline=None)
@given(st.text(st.sampled_from(list("aZ09.-_xn-é[]:")), min_size=1, max_size=70))
@example("Po00001.TEST")
@example("a" * 64 + ".test")
@example("xn--pypal-4ve.test")
def test_fast_domain_equals_normalise_domain(text: str) -> None:
    fast = simple_domain(text)
    if fast is None:
        return
    try:
        slow = normalise_domain(text)
    except AddressError as exc:
        raise AssertionError(f"{text!r} passed the fast path but is refused") from exc
    assert fast == slow
