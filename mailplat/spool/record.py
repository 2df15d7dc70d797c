"""The on-disk format of spool files: versioned, self-checking, whole or rejected.

One format serves both kinds of spool file:
- a message file (incoming/, msg/): the envelope it arrived with plus the bytes;
- a queue record (q/<queue>/): an envelope plus the id of its message file.

Layout (all ASCII except the body):

    MPLSPOOL 1\n
    <header JSON, one line>\n
    <body: exactly header["len"] octets>
    \nEND <crc32 of everything before this line, 8 hex>\n

A file is accepted only when the magic, version, length and checksum all agree,
so a torn write or a flipped bit is detected instead of delivered. Unknown
header keys are ignored so a newer writer's files still load.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from mailplat.core.envelope import Envelope

MAGIC = b"MPLSPOOL "
VERSION = 1
_TRAILER = b"\nEND "
_TRAILER_LEN = len(_TRAILER) + 8 + 1


class CorruptRecord(ValueError):
    """A spool file is not a whole, valid record."""


@dataclass(frozen=True, slots=True)
class Record:
    """What a spool file holds: envelope, the message id it refers to, the body."""

    envelope: Envelope
    msg_id: str
    body: bytes


def _env_to_json(env: Envelope) -> dict[str, object]:
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


def _env_from_json(obj: dict[str, object]) -> Envelope:
    try:
        rcpts = obj["rcpts"]
        meta = obj.get("meta", [])
        assert isinstance(rcpts, list) and isinstance(meta, list)
        return Envelope(
            mail_from=str(obj["from"]),
            rcpts=tuple(str(r) for r in rcpts),
            trace_id=str(obj["trace"]),
            received_at=float(obj["at"]),  # type: ignore[arg-type]
            client_ip=str(obj.get("ip", "")),
            helo=str(obj.get("helo", "")),
            auth_login=str(obj.get("auth", "")),
            attempts=int(obj.get("attempts", 0)),  # type: ignore[call-overload]
            next_try=float(obj.get("next", 0.0)),  # type: ignore[arg-type]
            meta=tuple((str(k), str(v)) for k, v in meta),
        )
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        raise CorruptRecord(f"bad envelope: {exc}") from exc


def encode(envelope: Envelope, msg_id: str, body: bytes = b"") -> bytes:
    """The bytes of one spool file."""
    header = {"env": _env_to_json(envelope), "msg": msg_id, "len": len(body)}
    head = MAGIC + str(VERSION).encode() + b"\n" + json.dumps(header).encode() + b"\n"
    crc = zlib.crc32(body, zlib.crc32(head))
    return b"".join((head, body, _TRAILER, f"{crc:08x}".encode(), b"\n"))


def decode(raw: bytes) -> Record:
    """Parse one spool file; CorruptRecord unless it is whole and valid."""
    if not raw.startswith(MAGIC):
        raise CorruptRecord("not a spool file (bad magic)")
    first_nl = raw.find(b"\n")
    version = raw[len(MAGIC) : first_nl]
    if version != str(VERSION).encode():
        raise CorruptRecord(f"unsupported spool version {version!r}")
    second_nl = raw.find(b"\n", first_nl + 1)
    if second_nl < 0:
        raise CorruptRecord("truncated header")
    try:
        header = json.loads(raw[first_nl + 1 : second_nl])
        length = int(header["len"])
        msg_id = str(header["msg"])
        env_obj = header["env"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptRecord(f"bad header: {exc}") from exc
    if not isinstance(env_obj, dict) or length < 0:
        raise CorruptRecord("bad header")
    body_start = second_nl + 1
    body_end = body_start + length
    if len(raw) != body_end + _TRAILER_LEN:
        raise CorruptRecord("truncated or overlong file")
    trailer = raw[body_end:]
    if not trailer.startswith(_TRAILER) or not trailer.endswith(b"\n"):
        raise CorruptRecord("missing END marker")
    try:
        stored = int(trailer[len(_TRAILER) : -1], 16)
    except ValueError as exc:
        raise CorruptRecord("bad checksum field") from exc
    if zlib.crc32(raw[:body_end]) != stored:
        raise CorruptRecord("checksum mismatch")
    return Record(_env_from_json(env_obj), msg_id, raw[body_start:body_end])


def salvage_envelope(raw: bytes) -> Envelope | None:
    """The envelope of a damaged file when its header line is still whole, else None.

    Used only to tell a sender that their message was lost: the header line
    is JSON of its own, so damage to the body (the usual torn or flipped
    bytes) leaves it readable.
    """
    if not raw.startswith(MAGIC):
        return None
    first_nl = raw.find(b"\n")
    second_nl = raw.find(b"\n", first_nl + 1)
    if first_nl < 0 or second_nl < 0:
        return None
    try:
        header = json.loads(raw[first_nl + 1 : second_nl])
        env = header["env"] if isinstance(header, dict) else None
        return _env_from_json(env) if isinstance(env, dict) else None
    except (ValueError, KeyError, TypeError, CorruptRecord):
        return None
