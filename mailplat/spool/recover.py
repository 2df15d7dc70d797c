"""Spool recovery: turn whatever a crash left on disk into a consistent spool.

Runs once at open, before anything is accepted. The state table (every file
the spool writes is in exactly one of these places):

| found                                  | meaning                               | action                         |
|----------------------------------------|---------------------------------------|--------------------------------|
| tmp/<any>                              | write never finished, no 250 was sent | delete                         |
| incoming/<id>, valid                   | accepted, routing not committed       | keep; drop q/*/<id>.* records, |
|                                        |                                       | drop a stale msg/<id>          |
| incoming/<id>, corrupt                 | disk damage (it was fsynced)          | move to quarantine/            |
| q/<queue>/<rid>, valid, msg/<id> there | routed, not yet done                  | keep, index it                 |
| q/<queue>/<rid>, corrupt or no message | damage or an impossible state         | move to quarantine/, log error |
| msg/<id> whose only record was corrupt | its record was damaged                | move to quarantine/            |
| msg/<id> with no record                | every record done, unlink lost        | delete                         |
| quarantine/<any>                       | set aside for the admin               | leave, count                   |

Whatever is quarantined gets an info file (quarantine.py); when the damaged
file's envelope can still be read, the info asks the MTA agent to tell the
sender, once.

A half-routed message is routed again from incoming/, so each recipient gets
exactly one record; a record finished but not unlinked is delivered again
(at-least-once, never lost).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailplat.core.envelope import Envelope
from mailplat.spool import quarantine as quarantine_dir
from mailplat.spool.record import CorruptRecord, Record, decode, salvage_envelope

log = logging.getLogger("mailplat.spool")


@dataclass
class RecoveryReport:
    """What open() found; logged at start and used by tests."""

    incoming: int = 0
    records: dict[str, int] = field(default_factory=dict)
    tmp_removed: int = 0
    half_routed: int = 0
    orphans_removed: int = 0
    quarantined: int = 0
    after_crash: bool = False

    def __str__(self) -> str:
        queued = ",".join(f"{q}={n}" for q, n in sorted(self.records.items())) or "none"
        return (
            f"incoming={self.incoming} queued={queued} tmp_removed={self.tmp_removed} "
            f"half_routed={self.half_routed} orphans_removed={self.orphans_removed} "
            f"quarantined={self.quarantined} after_crash={self.after_crash}"
        )


@dataclass
class Index:
    """The in-memory view of the spool rebuilt from disk."""

    incoming: list[str] = field(default_factory=list)
    # queue -> record id -> next_try
    queues: dict[str, dict[str, float]] = field(default_factory=dict)
    refs: dict[str, int] = field(default_factory=dict)


def msg_of(record_id: str) -> str:
    """The message id a record id belongs to (`<msg>.<n>`)."""
    return record_id.rsplit(".", 1)[0]


def quarantine(
    root: Path,
    path: Path,
    why: str,
    env: Envelope | None = None,
    *,
    quiet: bool = False,
    **info: Any,
) -> str:
    """Set one damaged file aside (quarantine.move); a readable envelope asks for a notice.

    One log line unless quiet (a caller moving two files of one message logs once).
    """
    facts: dict[str, Any] = {"id": msg_of(path.name), **info}
    if env is not None:
        facts.update(quarantine_dir.envelope_facts(env))
        facts["notify"] = bool(env.mail_from)
    name = quarantine_dir.move(root, path, why, facts)
    if not quiet:
        log.error(
            "spool quarantined id=%s file=%s/%s why=%s",
            facts["id"],
            path.parent.name,
            path.name,
            why,
        )
    return name


def _names(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _read_or_quarantine(root: Path, path: Path, report: RecoveryReport) -> Record | None:
    """The file's record, or None after moving a damaged file to quarantine/."""
    raw = path.read_bytes()
    try:
        return decode(raw)
    except CorruptRecord as exc:
        kind = "incoming" if path.parent.name == "incoming" else "record"
        extra: dict[str, Any] = {}
        if kind == "record":
            extra = {"queue": path.parent.name, "record": path.name}
        env = salvage_envelope(raw)
        quarantine(root, path, str(exc), env, kind=kind, body_lost=kind == "incoming", **extra)
        report.quarantined += 1
        return None


def recover(root: Path) -> tuple[Index, RecoveryReport]:
    """Apply the state table to the spool at root; return the rebuilt index."""
    report = RecoveryReport()
    index = Index()
    for name in _names(root / "tmp"):
        (root / "tmp" / name).unlink(missing_ok=True)
        report.tmp_removed += 1

    incoming: list[tuple[float, str]] = []
    for name in _names(root / "incoming"):
        rec = _read_or_quarantine(root, root / "incoming" / name, report)
        if rec is None:
            continue
        incoming.append((rec.envelope.received_at, name))
        stale = root / "msg" / name
        if stale.exists():
            stale.unlink()
    incoming.sort()
    index.incoming = [name for _, name in incoming]
    pending = set(index.incoming)
    report.incoming = len(pending)

    half_routed: set[str] = set()
    lost_records: set[str] = set()
    for queue in _names(root / "q"):
        qdir = root / "q" / queue
        if not qdir.is_dir():
            continue
        records = index.queues.setdefault(queue, {})
        for rid in _names(qdir):
            path = qdir / rid
            msg_id = msg_of(rid)
            if msg_id in pending:
                path.unlink()
                half_routed.add(msg_id)
                continue
            rec = _read_or_quarantine(root, path, report)
            if rec is None:
                lost_records.add(msg_id)
                continue
            if not (root / "msg" / rec.msg_id).exists():
                quarantine(
                    root,
                    path,
                    f"message {rec.msg_id} is missing",
                    rec.envelope,
                    kind="record",
                    queue=queue,
                    record=rid,
                    body_lost=True,
                )
                report.quarantined += 1
                continue
            records[rid] = rec.envelope.next_try
            index.refs[rec.msg_id] = index.refs.get(rec.msg_id, 0) + 1
        report.records[queue] = len(records)
    report.half_routed = len(half_routed)

    for name in _names(root / "msg"):
        if name in index.refs:
            continue
        if name in lost_records:
            # Its record is gone but the text is whole: keep it for the admin.
            # Logged with its record already: one line per damaged message.
            why = "its queue record was damaged"
            quarantine(root, root / "msg" / name, why, quiet=True, kind="message")
            report.quarantined += 1
            continue
        (root / "msg" / name).unlink()
        report.orphans_removed += 1
    return index, report
