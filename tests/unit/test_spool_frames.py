"""The journal's frame format: round trip, and every torn or damaged frame is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailplat.core.envelope import Envelope
from mailplat.spool import frames as fr

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
ids = st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=1, max_size=20)


@given(envelopes, st.binary(max_size=2000), ids)
def test_accept_round_trip(env: Envelope, body: bytes, msg_id: str) -> None:
    raw, body_offset = fr.accept(msg_id, env, body)
    acc = fr.parse_accept(fr.decode(raw))
    assert (acc.msg_id, acc.env, acc.body) == (msg_id, env, body)
    assert raw[body_offset:] == body == raw[acc.body_offset :]


@given(envelopes, ids, st.lists(st.sampled_from(["postoffice", "smtp", "badmail"]), max_size=4))
def test_state_frames_round_trip(env: Envelope, msg_id: str, queues: list[str]) -> None:
    recs = [(q, f"{msg_id}.{i}", env) for i, q in enumerate(queues)]
    frame = fr.decode(fr.route(msg_id, recs))
    obj = frame.json()
    assert frame.kind == fr.ROUTE and obj["id"] == msg_id
    assert [(q, r, fr.env_from_json(e)) for q, r, e in obj["recs"]] == recs
    upd = fr.decode(fr.update("smtp", f"{msg_id}.0", env)).json()
    assert fr.env_from_json(upd["env"]) == env
    assert fr.decode(fr.done("smtp", f"{msg_id}.0")).json() == {"q": "smtp", "r": f"{msg_id}.0"}


@given(envelopes, st.binary(max_size=300), st.data())
def test_truncation_is_always_detected(env: Envelope, body: bytes, data: st.DataObject) -> None:
    raw, _ = fr.accept("M1", env, body)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(fr.CorruptFrame):
        fr.decode(raw[:cut])


@given(envelopes, st.binary(max_size=300), st.data())
def test_a_flipped_bit_is_always_detected(env: Envelope, body: bytes, data: st.DataObject) -> None:
    raw = bytearray(fr.accept("M1", env, body)[0])
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(fr.CorruptFrame):
        fr.parse_accept(fr.decode(bytes(raw)))


def _log(*frames: bytes) -> bytes:
    return b"".join(frames)


ENV = Envelope("a@b.test", ("c@d.test",), "T", 1.0)


def test_scan_skips_damage_and_carries_on() -> None:
    one, _ = fr.accept("M1", ENV, b"first message")
    two, _ = fr.accept("M2", ENV, b"second message")
    three = fr.done("smtp", "M1.0")
    broken = bytearray(two)
    broken[-3] ^= 0x10
    items = list(fr.scan(_log(one, bytes(broken), three)))
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Frame", "Damage", "Frame"]
    damage = items[1]
    assert isinstance(damage, fr.Damage) and not damage.torn_tail
    assert damage.offset == len(one) and damage.length == len(two)
    # Its envelope is still readable: the sender can be told.
    assert fr.salvage_accept(bytes(broken)) == ("M2", ENV)


def test_a_torn_tail_is_not_damage_and_zeros_are_nothing() -> None:
    one, _ = fr.accept("M1", ENV, b"first")
    two, _ = fr.accept("M2", ENV, b"second, cut short by the crash " + fr.MAGIC + b" inside")
    items = list(fr.scan(one + two[: len(two) - 5]))
    assert isinstance(items[0], fr.Frame)
    assert [i.torn_tail for i in items[1:] if isinstance(i, fr.Damage)] == [True]
    assert [type(i).__name__ for i in fr.scan(one + b"\x00" * 100)] == ["Frame"]


def test_garbage_is_refused() -> None:
    with pytest.raises(fr.CorruptFrame, match="magic"):
        fr.decode(b"hello world, not a frame")
    raw = fr.done("smtp", "M1.0")
    with pytest.raises(fr.CorruptFrame):
        fr.decode(raw[:4] + b"Z" + raw[5:])  # an unknown kind
