"""Read a spool written by mailplat before the journal (one file per message) once.

The old layout: incoming/<id> (accepted, not routed), msg/<id> (routed
text), q/<queue>/<id>.<n> (records), each file `MPLSPOOL 1` + a JSON header
+ the bytes + `END <crc32>`. `import_old(root)` yields every whole message
so the spool can write it into the journal (durably) and then remove the old
files; a damaged old file is left where it is and reported, never deleted.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailplat.core.envelope import Envelope
from mailplat.spool.frames import CorruptFrame, env_from_json

OLD_DIRS = ("tmp", "incoming", "msg", "q")
_MAGIC = b"MPLSPOOL 1\n"
_TRAILER_LEN = len(b"\nEND ") + 8 + 1


@dataclass
class OldMessage:
    msg_id: str
    env: Envelope
    body: bytes
    routed: bool
    records: list[tuple[str, str, Envelope]] = field(default_factory=list)


def _decode(raw: bytes) -> tuple[Envelope, str, bytes]:
    if not raw.startswith(_MAGIC):
        raise CorruptFrame("not an old spool file")
    nl = raw.find(b"\n", len(_MAGIC))
    header = json.loads(raw[len(_MAGIC) : nl])
    start = nl + 1
    end = start + int(header["len"])
    if len(raw) != end + _TRAILER_LEN or zlib.crc32(raw[:end]) != int(raw[end + 5 : -1], 16):
        raise CorruptFrame("damaged old spool file")
    return env_from_json(header["env"]), str(header["msg"]), raw[start:end]


def present(root: Path) -> bool:
    """True when an old layout with anything in it is there."""
    return any((root / d).is_dir() and any((root / d).iterdir()) for d in OLD_DIRS[1:])


def import_old(root: Path) -> Iterator[OldMessage | tuple[Path, str]]:
    """Whole old messages (with their records), or (path, why) for files that are not."""
    records: dict[str, list[tuple[str, str, Envelope]]] = {}
    qroot = root / "q"
    for queue in sorted(os.listdir(qroot)) if qroot.is_dir() else []:
        for rid in sorted(os.listdir(qroot / queue)):
            try:
                env, msg_id, _ = _decode((qroot / queue / rid).read_bytes())
            except (OSError, ValueError, KeyError, CorruptFrame) as exc:
                yield (qroot / queue / rid, str(exc))
                continue
            records.setdefault(msg_id, []).append((queue, rid, env))
    for sub, routed in (("msg", True), ("incoming", False)):
        for name in sorted(os.listdir(root / sub)) if (root / sub).is_dir() else []:
            path = root / sub / name
            try:
                env, _, body = _decode(path.read_bytes())
            except (OSError, ValueError, KeyError, CorruptFrame) as exc:
                yield (path, str(exc))
                continue
            recs = records.pop(name, []) if routed else []
            if routed and not recs:
                continue  # every record was done: the unlink of the text was lost
            yield OldMessage(name, env, body, routed, recs)
    for recs in records.values():
        for queue, rid, _ in recs:
            yield (qroot / queue / rid, "its message file is missing")
