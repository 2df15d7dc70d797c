"""The journal's record format: self-checking frames, whole or rejected.

Every change to the spool is one frame appended to a segment file:

    magic  b"\\xa5MPJ"           4 octets
    kind   one ASCII letter       1 octet   (A accept, R route, U update, M move,
                                             D done, Q quarantined)
    length of the payload         4 octets, big-endian
    crc32 of kind+length+payload  4 octets, big-endian
    payload                       `length` octets

An ACCEPT payload is `u32 json length | u32 crc32 of the json | json | body`,
so the envelope of a message whose body was damaged can still be read (and
its sender told); every other payload is one JSON object.

A frame counts only when magic, length and checksum all agree: a torn write
(the tail of a segment after a crash) or a flipped bit is detected, never
delivered. `scan` walks a segment frame by frame and, after damage, finds the
next magic to carry on: one bad frame loses that frame, not the segment.
Unknown JSON keys are ignored so a newer writer's frames still load.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mailplat.core.envelope import Envelope

MAGIC = b"\xa5MPJ"
_HEAD = struct.Struct(">4scII")
HEAD_LEN = _HEAD.size  # 13
_ACCEPT_HEAD = struct.Struct(">II")
# A frame longer than this is damage, not a message (the SMTP size cap is lower).
MAX_PAYLOAD = 1 << 30

ACCEPT = b"A"
ROUTE = b"R"
UPDATE = b"U"
MOVE = b"M"
DONE = b"D"
QUARANTINED = b"Q"
KINDS = frozenset({ACCEPT, ROUTE, UPDATE, MOVE, DONE, QUARANTINED})


class CorruptFrame(ValueError):
    """Bytes that are not one whole, valid frame."""


# -- envelopes as JSON ----------------------------------------------------------------


def env_to_json(env: Envelope) -> dict[str, object]:
    return {
        "from": env.mail_from,
        "rcpts": list(env.rcpts),
        "trace": env.trace_id,
        "at": env.received_at,
        "ip": env.client_ip,
        "helo": env.helo,
        "auth": env.auth_login,
        "attempts": env.attempts,
        "next": env.next_try,
        "meta": [list(kv) for kv in env.meta],
    }


def env_from_json(obj: object) -> Envelope:
    try:
        assert isinstance(obj, dict)
        rcpts = obj["rcpts"]
        meta = obj.get("meta", [])
        assert isinstance(rcpts, list) and isinstance(meta, list)
        return Envelope(
            mail_from=str(obj["from"]),
            rcpts=tuple(str(r) for r in rcpts),
            trace_id=str(obj["trace"]),
            received_at=float(obj["at"]),
            client_ip=str(obj.get("ip", "")),
            helo=str(obj.get("helo", "")),
            auth_login=str(obj.get("auth", "")),
            attempts=int(obj.get("attempts", 0)),
            next_try=float(obj.get("next", 0.0)),
            meta=tuple((str(k), str(v)) for k, v in meta),
        )
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        raise CorruptFrame(f"bad envelope: {exc}") from exc


# -- building frames ---------------------------------------------------------------------


def _frame(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind + struct.pack(">I", len(payload))))
    return _HEAD.pack(MAGIC, kind, len(payload), crc) + payload


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def accept(msg_id: str, env: Envelope, body: bytes) -> tuple[bytes, int]:
    """An ACCEPT frame and where its body starts inside the frame."""
    head = _json({"id": msg_id, "env": env_to_json(env)})
    prefix = _ACCEPT_HEAD.pack(len(head), zlib.crc32(head)) + head
    frame = _frame(ACCEPT, prefix + body)
    return frame, HEAD_LEN + len(prefix)


def route(msg_id: str, records: list[tuple[str, str, Envelope]]) -> bytes:
    """Where a message went: its queue records ([] when every recipient is finished)."""
    recs = [[queue, rid, env_to_json(env)] for queue, rid, env in records]
    return _frame(ROUTE, _json({"id": msg_id, "recs": recs}))


def update(queue: str, rid: str, env: Envelope) -> bytes:
    return _frame(UPDATE, _json({"q": queue, "r": rid, "env": env_to_json(env)}))


def move(queue: str, rid: str, to: str, env: Envelope) -> bytes:
    return _frame(MOVE, _json({"q": queue, "r": rid, "to": to, "env": env_to_json(env)}))


def done(queue: str, rid: str) -> bytes:
    return _frame(DONE, _json({"q": queue, "r": rid}))


def quarantined(msg_id: str, queue: str = "", rid: str = "") -> bytes:
    """A message (or one record of it) set aside: replay skips it from here on."""
    return _frame(QUARANTINED, _json({"id": msg_id, "q": queue, "r": rid}))


# -- reading frames ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    kind: bytes
    offset: int  # of the frame in its segment
    length: int  # of the whole frame
    payload: bytes

    def json(self) -> dict[str, Any]:
        try:
            obj = json.loads(self.payload)
        except ValueError as exc:
            raise CorruptFrame(f"bad JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise CorruptFrame("payload is not an object")
        return obj


@dataclass(frozen=True, slots=True)
class Accepted:
    msg_id: str
    env: Envelope
    body_offset: int  # inside the frame
    body: bytes


def parse_accept(frame: Frame) -> Accepted:
    head_len, head_crc = _ACCEPT_HEAD.unpack_from(frame.payload)
    start = _ACCEPT_HEAD.size
    head = frame.payload[start : start + head_len]
    if zlib.crc32(head) != head_crc:
        raise CorruptFrame("accept header checksum mismatch")
    try:
        obj = json.loads(head)
        msg_id = str(obj["id"])
        env = env_from_json(obj["env"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFrame(f"bad accept header: {exc}") from exc
    body_start = start + head_len
    return Accepted(msg_id, env, HEAD_LEN + body_start, frame.payload[body_start:])


def text_of(raw: bytes) -> bytes:
    """The message text inside (possibly damaged) ACCEPT frame bytes; other bytes as they are."""
    start = HEAD_LEN + _ACCEPT_HEAD.size
    if len(raw) < start or raw[:4] != MAGIC or raw[4:5] != ACCEPT:
        return raw
    head_len, _ = _ACCEPT_HEAD.unpack_from(raw, HEAD_LEN)
    return raw[start + head_len :] if start + head_len <= len(raw) else raw


def salvage_accept(raw: bytes) -> tuple[str, Envelope] | None:
    """The id and envelope of a damaged ACCEPT frame whose header part is still whole."""
    if len(raw) < HEAD_LEN + _ACCEPT_HEAD.size or raw[:4] != MAGIC or raw[4:5] != ACCEPT:
        return None
    head_len, head_crc = _ACCEPT_HEAD.unpack_from(raw, HEAD_LEN)
    start = HEAD_LEN + _ACCEPT_HEAD.size
    head = raw[start : start + head_len]
    if len(head) != head_len or zlib.crc32(head) != head_crc:
        return None
    try:
        obj = json.loads(head)
        return str(obj["id"]), env_from_json(obj["env"])
    except (ValueError, KeyError, TypeError, CorruptFrame):
        return None


def decode(raw: bytes, offset: int = 0) -> Frame:
    """The frame at raw[offset:]; CorruptFrame unless it is whole and valid."""
    if len(raw) - offset < HEAD_LEN:
        raise CorruptFrame("truncated frame header")
    magic, kind, length, crc = _HEAD.unpack_from(raw, offset)
    if magic != MAGIC:
        raise CorruptFrame("bad magic")
    if kind not in KINDS or length > MAX_PAYLOAD:
        raise CorruptFrame("bad frame header")
    end = offset + HEAD_LEN + length
    if end > len(raw):
        raise CorruptFrame("truncated frame")
    payload = raw[offset + HEAD_LEN : end]
    if zlib.crc32(payload, zlib.crc32(kind + struct.pack(">I", length))) != crc:
        raise CorruptFrame("checksum mismatch")
    return Frame(kind, offset, HEAD_LEN + length, payload)


def whole_frame(raw: bytes) -> bool:
    """True when raw has the shape of exactly one frame (magic, kind, length fit)."""
    if len(raw) < HEAD_LEN or raw[:4] != MAGIC:
        return False
    _, kind, length, _ = _HEAD.unpack_from(raw)
    return kind in KINDS and HEAD_LEN + length == len(raw)


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes between good frames that are not a frame: [offset, offset+length)."""

    offset: int
    length: int
    why: str
    torn_tail: bool  # nothing good follows: the write a crash cut short


def scan(raw: bytes) -> Iterator[Frame | Damage]:
    """Every frame of a segment in order, and every damaged stretch between them.

    Damage after the last good frame is the torn tail of a write a crash cut
    short (it was never acknowledged); damage with good frames after it is
    real damage to data that was on disk.
    """
    pos = 0
    size = len(raw)
    pending: list[Damage] = []
    while pos < size:
        try:
            frame = decode(raw, pos)
        except CorruptFrame as exc:
            nxt = raw.find(MAGIC, pos + 1)
            end = size if nxt < 0 else nxt
            pending.append(Damage(pos, end - pos, str(exc), torn_tail=False))
            pos = end
            continue
        yield from pending
        pending.clear()
        yield frame
        pos += frame.length
    if pending:
        start = pending[0].offset
        # Zeros after the last frame are space that was never written.
        if raw.count(b"\x00", start) != size - start:
            yield Damage(start, size - start, pending[0].why, torn_tail=True)
