"""Spool file format: round trip, and every torn or damaged file is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailplat.core.envelope import Envelope
from mailplat.spool.record import CorruptRecord, decode, encode

text = st.text(max_size=40)
envelopes = st.builds(
    Envelope,
    mail_from=text,
    rcpts=st.lists(text, max_size=5).map(tuple),
    trace_id=text,
    received_at=st.floats(allow_nan=False, allow_infinity=False),
    client_ip=text,
    helo=text,
    auth_login=text,
    attempts=st.integers(0, 1000),
    next_try=st.floats(min_value=0, max_value=1e10),
    meta=st.lists(st.tuples(text, text), max_size=4).map(tuple),
)


@given(envelopes, st.binary(max_size=2000), st.text(min_size=1, max_size=30))
def test_round_trip(env: Envelope, body: bytes, msg_id: str) -> None:
    rec = decode(encode(env, msg_id, body))
    assert rec.envelope == env
    assert rec.body == body
    assert rec.msg_id == msg_id


@given(envelopes, st.binary(max_size=300), st.data())
def test_truncation_is_always_detected(env: Envelope, body: bytes, data: st.DataObject) -> None:
    raw = encode(env, "M1", body)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(CorruptRecord):
        decode(raw[:cut])


@given(envelopes, st.binary(max_size=300), st.data())
def test_a_flipped_bit_is_always_detected(env: Envelope, body: bytes, data: st.DataObject) -> None:
    raw = bytearray(encode(env, "M1", body))
    pos = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    raw[pos] ^= 1 << bit
    with pytest.raises(CorruptRecord):
        decode(bytes(raw))


def test_garbage_and_other_versions_are_refused() -> None:
    env = Envelope("a@b.test", ("c@d.test",), "T", 1.0)
    raw = encode(env, "M1", b"x")
    with pytest.raises(CorruptRecord, match="magic"):
        decode(b"hello world")
    with pytest.raises(CorruptRecord, match="version"):
        decode(raw.replace(b"MPLSPOOL 1", b"MPLSPOOL 9", 1))
    with pytest.raises(CorruptRecord):
        decode(raw + b"extra")
