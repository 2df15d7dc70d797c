"""Reach into a spool's journal on disk: find a message's frame, damage it, cut it short.

Tests of recovery and quarantine need the disk states a crash or a failing
disk leaves; these helpers make them from the real files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailplat.spool import frames as fr
from mailplat.spool.journal import segment_name, segment_numbers


@dataclass(frozen=True)
class Located:
    path: Path
    offset: int
    length: int
    kind: bytes


def segments(spool_root: Path) -> list[Path]:
    journal = spool_root / "journal"
    return [journal / segment_name(s) for s in segment_numbers(journal)]


def frames_of(spool_root: Path, msg_id: str) -> list[Located]:
    """Every whole frame about msg_id (its ACCEPT, ROUTE, UPDATE, ...), in log order."""
    out = []
    for path in segments(spool_root):
        raw = path.read_bytes()
        for item in fr.scan(raw):
            if isinstance(item, fr.Damage):
                continue
            about = msg_id.encode() in item.payload[:4096]
            if about:
                out.append(Located(path, item.offset, item.length, item.kind))
    return out


def accept_of(spool_root: Path, msg_id: str) -> Located:
    [found] = [f for f in frames_of(spool_root, msg_id) if f.kind == fr.ACCEPT][-1:]
    return found


def flip(path: Path, offset: int) -> None:
    """Flip one bit at offset (the kind of damage a failing disk does)."""
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def damage_body(spool_root: Path, msg_id: str, marker: bytes = b"") -> None:
    """Flip a bit inside the text of msg_id's ACCEPT (at `marker` when given)."""
    loc = accept_of(spool_root, msg_id)
    raw = loc.path.read_bytes()[loc.offset : loc.offset + loc.length]
    at = raw.find(marker) if marker else len(raw) - 2
    assert at > 0, "marker not in the message"
    flip(loc.path, loc.offset + at)


def damage_accept_header(spool_root: Path, msg_id: str) -> None:
    """Flip a bit in the envelope part of msg_id's ACCEPT (sender unknowable)."""
    loc = accept_of(spool_root, msg_id)
    flip(loc.path, loc.offset + fr.HEAD_LEN + 10)


def drop_frames_after(path: Path, offset: int) -> None:
    """Cut a segment at offset: what a crash before those writes leaves."""
    raw = path.read_bytes()
    path.write_bytes(raw[:offset])


def queued(spool_root: Path, queue: str) -> list[str]:
    """The record ids of a queue as a restart would find them (read from the journal)."""
    from concurrent.futures import ThreadPoolExecutor

    from mailplat.spool.journal import Journal
    from mailplat.spool.replay import replay

    with ThreadPoolExecutor(1) as pool:
        state, _ = replay(spool_root, Journal(spool_root / "journal", pool))
    return sorted(
        rid for m in state.messages.values() for rid, (q, _) in m.records.items() if q == queue
    )
