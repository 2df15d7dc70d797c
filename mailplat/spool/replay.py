"""Spool recovery: rebuild the spool's state from its journal after any stop or crash.

Runs once at open, before anything is accepted. Segments are read oldest
first, frame by frame, and each frame moves one message along this table:

| frame / finding                          | meaning                                 | replay does                      |
|------------------------------------------|-----------------------------------------|----------------------------------|
| ACCEPT id                                | fsynced before its 250                  | the message exists, unrouted     |
| ACCEPT id again (a rebase copy)          | compaction copied it forward            | state restarts from this copy    |
| ROUTE id [records]                       | the MTA's decision                      | records exist; [] = finished     |
| UPDATE / MOVE of a record                | a retry was scheduled / a queue change  | the record takes the envelope    |
| DONE of a record                         | its work is finished                    | the record is gone; the last one |
|                                          |                                         | finishes the message             |
| QUARANTINED id                           | a worker found the message damaged      | the message is gone (set aside)  |
| any frame of an unknown message          | finished earlier, its ACCEPT deleted    | ignored                          |
| damage with good frames after it         | bytes on disk went bad                  | set aside in quarantine/ (once); |
|                                          |                                         | a readable ACCEPT header asks    |
|                                          |                                         | for a notice to its sender       |
| ROUTE of an unknown message after damage | its ACCEPT was in the damage            | its senders are told, once       |
| damage at the end of a segment           | a write a crash cut short (never acked) | ignored (the torn tail)          |

Every frame that still matters to a live message pins its segment; a
segment nothing pins is deleted. A message that was routed again before a
crash (its ROUTE lost) is routed again from its ACCEPT: at least once, never
lost; a DONE lost in a crash repeats that delivery (logged as a possible
duplicate, RELIABILITY.md guarantee 2).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mailplat.core.envelope import Envelope
from mailplat.spool import frames as fr
from mailplat.spool import quarantine as qfiles
from mailplat.spool.journal import Journal, segment_numbers

log = logging.getLogger("mailplat.spool")


@dataclass
class RecoveryReport:
    """What open() found; logged at start and used by tests."""

    incoming: int = 0
    records: dict[str, int] = field(default_factory=dict)
    segments: int = 0
    segments_removed: int = 0
    torn_bytes: int = 0
    quarantined: int = 0
    migrated: int = 0
    after_crash: bool = False

    def __str__(self) -> str:
        queued = ",".join(f"{q}={n}" for q, n in sorted(self.records.items())) or "none"
        return (
            f"incoming={self.incoming} queued={queued} segments={self.segments} "
            f"segments_removed={self.segments_removed} torn_bytes={self.torn_bytes} "
            f"quarantined={self.quarantined} migrated={self.migrated} "
            f"after_crash={self.after_crash}"
        )


@dataclass
class Message:
    """One live message: where its text is, its records, the segments it pins."""

    msg_id: str
    env: Envelope
    seq: int
    offset: int  # of its ACCEPT frame
    length: int  # of that frame
    body_offset: int  # of the body inside the frame
    size: int  # of the body
    routed: bool = False
    records: dict[str, tuple[str, Envelope]] = field(default_factory=dict)
    pins: Counter[int] = field(default_factory=Counter)


@dataclass
class State:
    messages: dict[str, Message] = field(default_factory=dict)
    refs: Counter[int] = field(default_factory=Counter)

    def pin(self, msg: Message, seq: int) -> None:
        msg.pins[seq] += 1
        self.refs[seq] += 1

    def unpin_all(self, msg: Message) -> list[int]:
        """Drop every pin of msg; the segments nothing pins any more."""
        freed = []
        for seq, count in msg.pins.items():
            self.refs[seq] -= count
            if self.refs[seq] <= 0:
                del self.refs[seq]
                freed.append(seq)
        msg.pins.clear()
        return freed


def msg_of(record_id: str) -> str:
    """The message id a record id belongs to (`<msg>.<n>`)."""
    return record_id.rsplit(".", 1)[0]


def damage_name(seq: int, offset: int) -> str:
    return f"journal-{seq:x}-{offset}"


def _set_aside(
    root: Path, name: str, raw: bytes, why: str, info: dict[str, object], report: RecoveryReport
) -> None:
    if qfiles.exists(root, name):
        return  # seen at an earlier start: never twice
    qfiles.write(root, name, raw, why, info)
    report.quarantined += 1
    log.error(
        "spool quarantined id=%s entry=%s why=%s (damaged journal bytes)",
        info.get("id", "-"),
        name,
        why,
    )


def replay(root: Path, journal: Journal) -> tuple[State, RecoveryReport]:
    """Apply the table to every segment under root/journal; the live state."""
    report = RecoveryReport()
    state = State()
    gone = qfiles.quarantined_ids(root)
    lost_damage = False
    seqs = segment_numbers(journal.directory)
    report.segments = len(seqs)
    for seq in seqs:
        raw = journal.read_all(seq)
        for item in fr.scan(raw):
            if isinstance(item, fr.Damage):
                bad = raw[item.offset : item.offset + item.length]
                # Only the segment being written at the crash can end in a torn
                # write, and a torn write is no whole frame with a bad checksum.
                if item.torn_tail and seq == seqs[-1] and not fr.whole_frame(bad):
                    report.torn_bytes += item.length
                    # Cut it off, so a later start (when this is no longer the
                    # last segment) does not take it for damage.
                    journal.truncate(seq, item.offset)
                    continue
                salvaged = fr.salvage_accept(bad)
                info: dict[str, object] = {"kind": "journal", "segment": seq, "offset": item.offset}
                if salvaged is not None:
                    msg_id, env = salvaged
                    info.update(qfiles.envelope_facts(env))
                    info.update(id=msg_id, notify=bool(env.mail_from), body_lost=True)
                    gone.add(msg_id)
                else:
                    lost_damage = True
                _set_aside(root, damage_name(seq, item.offset), bad, item.why, info, report)
                continue
            _apply(root, state, seq, item, gone, lost_damage, report)
    return state, report


def _finish(state: State, msg: Message) -> None:
    state.messages.pop(msg.msg_id, None)
    state.unpin_all(msg)


def _apply(
    root: Path,
    state: State,
    seq: int,
    frame: fr.Frame,
    gone: set[str],
    lost_damage: bool,
    report: RecoveryReport,
) -> None:
    try:
        if frame.kind == fr.ACCEPT:
            acc = fr.parse_accept(frame)
            if acc.msg_id in gone:
                return
            old = state.messages.get(acc.msg_id)
            if old is not None:
                state.unpin_all(old)
            msg = Message(
                acc.msg_id,
                acc.env,
                seq,
                frame.offset,
                frame.length,
                acc.body_offset,
                len(acc.body),
            )
            state.messages[acc.msg_id] = msg
            state.pin(msg, seq)
            return
        obj = frame.json()
        if frame.kind == fr.ROUTE:
            msg_id = str(obj["id"])
            found = state.messages.get(msg_id)
            recs = {str(r): (str(q), fr.env_from_json(e)) for q, r, e in obj["recs"]}
            if found is None:
                if lost_damage and msg_id not in gone and recs:
                    _lost_message(root, msg_id, recs, report)
                    gone.add(msg_id)
                return
            found.routed = True
            found.records = recs
            state.pin(found, seq)
            if not recs:
                _finish(state, found)
            return
        if frame.kind == fr.QUARANTINED:
            found = state.messages.get(str(obj["id"]))
            if found is not None:
                _finish(state, found)
            gone.add(str(obj["id"]))
            return
        rid = str(obj["r"])
        found = state.messages.get(msg_of(rid))
        if found is None or rid not in found.records:
            return
        if frame.kind == fr.DONE:
            del found.records[rid]
            state.pin(found, seq)
            if not found.records:
                _finish(state, found)
        elif frame.kind == fr.UPDATE:
            found.records[rid] = (found.records[rid][0], fr.env_from_json(obj["env"]))
            state.pin(found, seq)
        elif frame.kind == fr.MOVE:
            found.records[rid] = (str(obj["to"]), fr.env_from_json(obj["env"]))
            state.pin(found, seq)
    except (fr.CorruptFrame, KeyError, TypeError, ValueError, IndexError) as exc:
        # A frame whose checksum holds but whose content does not parse: a bug
        # of an older writer, not damage. Keep it for the admin, skip it.
        name = damage_name(seq, frame.offset)
        why = f"unreadable frame: {exc}"
        _set_aside(root, name, frame.payload, why, {"kind": "journal"}, report)


def _lost_message(
    root: Path, msg_id: str, recs: dict[str, tuple[str, Envelope]], report: RecoveryReport
) -> None:
    """A routed message whose text was in damaged bytes: tell its sender, once."""
    env = next(iter(recs.values()))[1]
    rcpts = [r for _, e in recs.values() for r in e.rcpts]
    info: dict[str, object] = {
        **qfiles.envelope_facts(env),
        "rcpts": rcpts,
        "id": msg_id,
        "kind": "journal",
        "notify": bool(env.mail_from),
        "body_lost": True,
    }
    name = f"journal-lost-{msg_id}"
    _set_aside(root, name, b"", "its text was in damaged journal bytes", info, report)
