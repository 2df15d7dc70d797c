"""The durable spool: accepted messages and the queue records that route them.

Layout under the spool root:

    journal/<seq>.seg   append-only segments of frames (frames.py): every
                        message's text and every change to its records
    quarantine/         damaged bytes set aside for the admin (quarantine.py)
    clean-stop          present only after a clean stop (see possible_duplicate)

One writer appends frames with group commit (journal.py). The cost per
message on the accept-and-deliver path is one shared fdatasync for the
ACCEPT (before the 250) and nothing synchronous for routing and "done",
whose loss in a crash can only repeat work (RELIABILITY.md guarantee 2).
The in-memory index (messages, records per queue, when each is due, which
are claimed) is rebuilt from the journal at open() by replay.py and kept in
step with every append; it is only touched from the event loop thread.

Guarantees:
- receive() returns only after the message's ACCEPT frame is fdatasynced, so
  a 250 is never given for mail a crash can lose;
- a queue move to badmail (move()) is synced too: a lost move would bring a
  given-up message back to life;
- a segment is deleted only when no live message has a frame in it; long-
  lived messages are copied forward (compact()) so old segments can go;
- a message found damaged when its text is read (Damaged) is set aside once
  with quarantine_record / quarantine_incoming: never retried, logged in one
  line, and its sender told by the MTA agent (the envelope is in memory).
This class is the whole interface connectors use (see api.py): accept
(receive), route, claim, done, recover (open). A PostgreSQL backend would
implement the same methods.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from mailplat.core.envelope import Envelope
from mailplat.core.errors import TemporaryFailure
from mailplat.core.ids import is_id, new_id
from mailplat.spool import frames as fr
from mailplat.spool import legacy
from mailplat.spool import quarantine as qfiles
from mailplat.spool.api import Damaged
from mailplat.spool.faults import fault
from mailplat.spool.journal import SEGMENT_BYTES, Journal, Position, segment_numbers
from mailplat.spool.replay import Message, RecoveryReport, State, damage_name, msg_of, replay

__all__ = ["CLEAN_STOP", "Damaged", "RecoveryReport", "Spool", "msg_of"]

log = logging.getLogger("mailplat.spool")

IO_THREADS = 8
BODY_CACHE_BYTES = 64 * 1024 * 1024
CLEAN_STOP = "clean-stop"
# A closed segment still pinned after this long has its messages copied forward.
COMPACT_AFTER_SECONDS = 600.0
T = TypeVar("T")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class Spool:
    """One spool directory; see the module docstring for layout and guarantees."""

    def __init__(self, root: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.root = root
        self._executor = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="spool-io")
        self.journal = Journal(root / "journal", self._executor, segment_bytes)
        self._state = State()
        self._incoming: dict[str, None] = {}  # insertion-ordered set
        self._queues: dict[str, dict[str, float]] = {}  # queue -> record id -> next try
        self._claimed: dict[str, set[str]] = {}
        self._reserved: set[str] = set()
        self._opened = False
        self._closed_at: dict[int, float] = {}
        # What this process wrote it can also remember: bodies are served from
        # memory (bounded) instead of read back from disk at every stage.
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._bodies_bytes = 0
        self._after_crash: set[tuple[str, str]] = set()
        # Called after a message is quarantined: the MTA agent sets it to its
        # kick, so the sender's notice goes out now rather than at the next poll.
        self.on_quarantine: Callable[[], None] | None = None

    # -- lifecycle ----------------------------------------------------------------

    def open(self) -> RecoveryReport:
        """Create the layout if needed, replay the journal, start a new segment (blocking)."""
        fresh = not (self.root / "journal").exists() and not legacy.present(self.root)
        (self.root / qfiles.DIR).mkdir(parents=True, exist_ok=True)
        self._state, report = replay(self.root, self.journal)
        seqs = segment_numbers(self.journal.directory)
        self.journal.start((seqs[-1] + 1) if seqs else 0)
        for msg in sorted(self._state.messages.values(), key=lambda m: (m.seq, m.offset)):
            if not msg.routed:
                self._incoming[msg.msg_id] = None
            for rid, (queue, env) in msg.records.items():
                self._queues.setdefault(queue, {})[rid] = env.next_try
        for seq in seqs:
            if seq not in self._state.refs:
                self.journal.delete(seq)
                report.segments_removed += 1
            else:
                self._closed_at[seq] = time.time()
        if legacy.present(self.root):
            report.migrated = self._migrate()
        report.incoming = len(self._incoming)
        report.records = {q: len(r) for q, r in self._queues.items()}
        # No clean-stop marker means the last run crashed: any record found may
        # have been delivered just before the crash and is flagged, so its
        # delivery is logged as a possible duplicate (RELIABILITY.md §2).
        marker = self.root / CLEAN_STOP
        if marker.exists() or fresh:
            marker.unlink(missing_ok=True)
        else:
            report.after_crash = True
            self._after_crash = {(q, rid) for q, recs in self._queues.items() for rid in recs}
        self._opened = True
        return report

    async def aclose(self) -> None:
        """Write and sync what is queued, then close (see close)."""
        await self.journal.drain()
        self.close()

    def close(self) -> None:
        """Write what is still queued, close the journal, leave the clean-stop marker."""
        self._executor.shutdown(wait=True)  # a write in progress finishes first
        if self._opened:
            self.journal.flush_now()
            self.journal.close()
            (self.root / CLEAN_STOP).touch()
            self._opened = False

    def possible_duplicate(self, queue: str, record_id: str) -> bool:
        """True when this record survived a crash: its work may already have been done once."""
        return (queue, record_id) in self._after_crash

    async def _io(self, func: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    # -- the journal ----------------------------------------------------------------

    def _log(
        self, frame: bytes, msg: Message | None, *, durable: bool = False
    ) -> asyncio.Future[Position | None]:
        """Append a frame; once written, it pins its segment for msg (while msg lives)."""
        fut = self.journal.append(frame, durable=durable)

        def written(f: asyncio.Future[Position | None]) -> None:
            if f.cancelled() or f.exception() is not None:
                return
            pos = f.result()
            if msg is not None and pos is not None and msg.msg_id in self._state.messages:
                self._state.pin(msg, pos[0])
            self._note_rotation()

        fut.add_done_callback(written)
        return fut

    def _note_rotation(self) -> None:
        while self.journal.on_rotate:
            seq = self.journal.on_rotate.pop()
            if seq in self._state.refs:
                self._closed_at[seq] = time.time()
            else:
                self._delete_segment(seq)

    def _delete_segment(self, seq: int) -> None:
        if seq == self.journal.seq:
            return
        self._closed_at.pop(seq, None)
        self._executor.submit(self.journal.delete, seq)

    def _finish(self, msg: Message) -> None:
        """The message has no work left: forget it and free the segments it held."""
        self._state.messages.pop(msg.msg_id, None)
        self._forget(msg.msg_id)
        for seq in self._state.unpin_all(msg):
            self._delete_segment(seq)

    # -- accepting ----------------------------------------------------------------

    async def receive(self, env: Envelope, data: bytes) -> str:
        """Store a message durably; its id once its ACCEPT frame is fdatasynced.

        The id is the envelope's trace id (the one in the Received header and
        the SMTP reply), so one id names the message at every stage. Only an
        empty, malformed or already used trace id (a badmail resend, whose
        original is still queued) gets a new one; the stored envelope then
        carries the new id and the log line names the old one as its parent.

        Raises TemporaryFailure when the disk is full or the write fails, so the
        SMTP session answers 452/451 and the sender keeps the message.
        """
        msg_id = env.trace_id
        if not is_id(msg_id) or self._taken(msg_id):
            msg_id = new_id()
            if env.trace_id:
                log.info("spool new-id id=%s parent=%s (id in use)", msg_id, env.trace_id)
            env = replace(env, trace_id=msg_id)
        self._reserved.add(msg_id)
        frame, body_offset = fr.accept(msg_id, env, data)
        try:
            pos = await self.journal.append(frame, durable=True)
        except OSError as exc:
            kind = "disk full" if exc.errno in _NO_SPACE else "write failed"
            log.error("spool %s id=%s why=%s", kind, msg_id, exc)
            raise TemporaryFailure(f"spool {kind}: {exc.strerror}") from exc
        finally:
            self._reserved.discard(msg_id)
        assert pos is not None
        fault("spool.accepted")
        msg = Message(msg_id, env, pos[0], pos[1], len(frame), body_offset, len(data))
        self._state.messages[msg_id] = msg
        self._state.pin(msg, pos[0])
        self._note_rotation()
        self._incoming[msg_id] = None
        self._remember(msg_id, data)
        return msg_id

    def _taken(self, msg_id: str) -> bool:
        return msg_id in self._state.messages or msg_id in self._reserved

    def _remember(self, msg_id: str, data: bytes) -> None:
        self._bodies[msg_id] = data
        self._bodies_bytes += len(data)
        while self._bodies_bytes > BODY_CACHE_BYTES and len(self._bodies) > 1:
            _, old = self._bodies.popitem(last=False)
            self._bodies_bytes -= len(old)

    def _forget(self, msg_id: str) -> None:
        cached = self._bodies.pop(msg_id, None)
        if cached is not None:
            self._bodies_bytes -= len(cached)

    def incoming(self) -> list[str]:
        """Ids accepted and not yet routed, oldest first."""
        return list(self._incoming)

    def read_incoming(self, msg_id: str) -> tuple[Envelope, bytes]:
        msg = self._state.messages[msg_id]
        return msg.env, self._body(msg, "incoming")

    def _body(self, msg: Message, kind: str) -> bytes:
        cached = self._bodies.get(msg.msg_id)
        if cached is not None:
            return cached
        where = f"journal {msg.seq:x}@{msg.offset}"
        try:
            raw = self.journal.read(msg.seq, msg.offset, msg.length)
            frame = fr.decode(raw)
            body = fr.parse_accept(frame).body
        except FileNotFoundError as exc:
            raise Damaged(kind, where, "its segment is missing") from exc
        except fr.CorruptFrame as exc:
            raise Damaged(kind, where, str(exc)) from exc
        # Read once from disk (after a restart): its other records use this copy.
        self._remember(msg.msg_id, body)
        return body

    async def quarantine_incoming(self, msg_id: str, why: str = "unreadable") -> None:
        """Set a damaged, unrouted message aside; its sender is told."""
        msg = self._state.messages.get(msg_id)
        self._incoming.pop(msg_id, None)
        if msg is not None:
            await self._quarantine(msg, why)

    # -- routing ------------------------------------------------------------------

    async def route(self, msg_id: str, records: Iterable[tuple[str, Envelope]]) -> None:
        """Commit the routing of one incoming message (see route_many)."""
        await self.route_many([(msg_id, list(records))])

    async def route_many(self, batch: list[tuple[str, list[tuple[str, Envelope]]]]) -> None:
        """Record where incoming messages go: one ROUTE frame each, not synced.

        A ROUTE lost in a crash makes replay route the message again from its
        ACCEPT; a message with no records (every recipient bounced) is finished.
        """
        waits = []
        for msg_id, records in batch:
            msg = self._state.messages.get(msg_id)
            if msg is None:
                continue
            entries = [(queue, f"{msg_id}.{i}", env) for i, (queue, env) in enumerate(records)]
            waits.append(self._log(fr.route(msg_id, entries), msg))
            self._incoming.pop(msg_id, None)
            msg.routed = True
            msg.records = {rid: (queue, env) for queue, rid, env in entries}
            for queue, rid, env in entries:
                self._queues.setdefault(queue, {})[rid] = env.next_try
            if not entries:
                self._finish(msg)
        # Written (not synced) before the records are worked on: a crash then
        # repeats work, but never leaves a record whose ROUTE nobody wrote.
        if waits:
            await asyncio.gather(*waits)
        fault("spool.routed")

    # -- consuming ----------------------------------------------------------------

    def due(self, queue: str, now: float, limit: int) -> list[str]:
        """Up to limit unclaimed record ids whose next try has come, earliest first."""
        records = self._queues.get(queue)
        if not records:
            return []
        claimed = self._claimed.get(queue, set())
        ready = ((t, rid) for rid, t in records.items() if t <= now and rid not in claimed)
        return [rid for _, rid in heapq.nsmallest(limit, ready)]

    def next_due(self, queue: str) -> float | None:
        """When the earliest unclaimed record of a queue is due (None when empty)."""
        records = self._queues.get(queue)
        if not records:
            return None
        claimed = self._claimed.get(queue, set())
        times = [t for rid, t in records.items() if rid not in claimed]
        return min(times) if times else None

    def claim(self, queue: str, record_id: str) -> bool:
        """Take a record for one worker; False when another has it or it is gone."""
        claimed = self._claimed.setdefault(queue, set())
        if record_id in claimed or record_id not in self._queues.get(queue, {}):
            return False
        claimed.add(record_id)
        return True

    def release(self, queue: str, record_id: str) -> None:
        self._claimed.get(queue, set()).discard(record_id)

    def _record(self, queue: str, record_id: str) -> tuple[Message, Envelope]:
        msg = self._state.messages.get(msg_of(record_id))
        entry = msg.records.get(record_id) if msg is not None else None
        if msg is None or entry is None or entry[0] != queue:
            raise FileNotFoundError(f"no record {record_id} in queue {queue}")
        return msg, entry[1]

    def read_record(self, queue: str, record_id: str) -> tuple[Envelope, str]:
        """A record's envelope and message id; FileNotFoundError when there is no such record."""
        _, env = self._record(queue, record_id)
        return env, msg_of(record_id)

    def read_message(self, msg_id: str) -> bytes:
        """A routed message's bytes; Damaged when they are missing or not whole."""
        msg = self._state.messages.get(msg_id)
        if msg is None:
            raise Damaged("message", msg_id, "missing")
        return self._body(msg, "message")

    async def quarantine_record(self, queue: str, record_id: str, damage: Damaged) -> None:
        """Set aside the damaged message a record belongs to, with all its records, for good.

        Its text cannot be delivered to anyone, so every record of it goes.
        The caller still releases its claim. One log line; the MTA agent tells
        the sender (from the envelope kept in memory).
        """
        msg = self._state.messages.get(msg_of(record_id))
        if msg is not None:
            await self._quarantine(msg, damage.why)

    async def _quarantine(self, msg: Message, why: str) -> None:
        rcpts = [r for _, env in msg.records.values() for r in env.rcpts] or list(msg.env.rcpts)
        info: dict[str, object] = {
            **qfiles.envelope_facts(msg.env),
            "rcpts": rcpts,
            "id": msg.msg_id,
            "kind": "message",
            "segment": msg.seq,
            "offset": msg.offset,
            "notify": bool(msg.env.mail_from),
            "body_lost": True,
        }
        # Named for where the bytes are, as replay names damage: found again at a
        # later start, it is recognised and not set aside (or announced) twice.
        name = damage_name(msg.seq, msg.offset)
        try:
            raw = await self._io(self.journal.read, msg.seq, msg.offset, msg.length)
        except OSError:
            raw = b""
        if not qfiles.exists(self.root, name):
            await self._io(qfiles.write, self.root, name, raw, why, info)
        await self._log(fr.quarantined(msg.msg_id), None, durable=True)
        for rid, (queue, _) in msg.records.items():
            self._queues.get(queue, {}).pop(rid, None)
            self._after_crash.discard((queue, rid))
        self._incoming.pop(msg.msg_id, None)
        self._finish(msg)
        log.error(
            "spool quarantined id=%s entry=%s why=%s (damaged text; not retried)",
            msg.msg_id,
            name,
            why,
        )
        if self.on_quarantine is not None:
            self.on_quarantine()

    # -- quarantine ----------------------------------------------------------------

    def quarantined(self) -> list[dict[str, object]]:
        """Every quarantined entry's info (quarantine.py), oldest first."""
        return qfiles.entries(self.root)

    def quarantine_entry(self, name: str) -> tuple[dict[str, object], bytes]:
        """One entry's info and the start of its bytes; FileNotFoundError when there is none."""
        if name not in qfiles.names(self.root):
            raise FileNotFoundError(name)
        raw = qfiles.content(self.root, name)
        # A damaged ACCEPT frame: show the message text it carries, as it is.
        return qfiles.read_info(self.root, name), fr.text_of(raw)

    def pending_notices(self) -> list[dict[str, object]]:
        """Quarantined entries whose sender has not been told yet."""
        return qfiles.pending_notices(self.root)

    async def mark_notified(self, name: str, notice_id: str) -> None:
        await self._io(qfiles.mark_notified, self.root, name, notice_id)

    # -- finishing and rescheduling -----------------------------------------------

    async def done(self, queue: str, record_id: str) -> None:
        """The record's work is finished; with the last record the message is finished.

        Not synced: a DONE a crash loses repeats that delivery, the duplicate
        RELIABILITY.md §2 allows for a crash before "done" is recorded.
        """
        try:
            msg, _ = self._record(queue, record_id)
        except FileNotFoundError:
            return
        self._log(fr.done(queue, record_id), msg)
        fault("spool.done")
        del msg.records[record_id]
        self._queues.get(queue, {}).pop(record_id, None)
        self._after_crash.discard((queue, record_id))
        if not msg.records:
            self._finish(msg)

    async def update(self, queue: str, record_id: str, env: Envelope) -> None:
        """Replace a record's envelope (attempts, next try, remaining recipients, history)."""
        msg, _ = self._record(queue, record_id)
        msg.records[record_id] = (queue, env)
        self._queues.setdefault(queue, {})[record_id] = env.next_try
        await self._log(fr.update(queue, record_id, env), msg)

    async def move(
        self, queue: str, record_id: str, new_queue: str, env: Envelope | None = None
    ) -> None:
        """Move a record to another queue (updating it as asked); synced."""
        msg, old = self._record(queue, record_id)
        env = env or old
        await self._log(fr.move(queue, record_id, new_queue, env), msg, durable=True)
        msg.records[record_id] = (new_queue, env)
        self._queues.get(queue, {}).pop(record_id, None)
        self._queues.setdefault(new_queue, {})[record_id] = env.next_try

    # -- compaction ------------------------------------------------------------------

    async def compact(self, older_than: float = COMPACT_AFTER_SECONDS) -> int:
        """Copy forward the messages that keep old segments alive; how many were copied.

        A segment closed longer than `older_than` seconds and still pinned holds
        mostly finished work; its live messages are written again (ACCEPT and
        ROUTE with their current records) into the current segment, synced, and
        the old segments they alone pinned are deleted.
        """
        now = time.time()
        old = {s for s, at in self._closed_at.items() if now - at >= older_than}
        movers = [m for m in list(self._state.messages.values()) if any(s in old for s in m.pins)]
        copied = 0
        for msg in movers:
            if msg.msg_id not in self._state.messages:
                continue
            try:
                body = self._body(msg, "message")
            except Damaged as exc:
                await self._quarantine(msg, exc.why)
                continue
            frame, body_offset = fr.accept(msg.msg_id, msg.env, body)
            accept = self.journal.append(frame, durable=not msg.routed)
            routed = None
            if msg.routed:
                entries = [(q, rid, env) for rid, (q, env) in msg.records.items()]
                routed = self.journal.append(fr.route(msg.msg_id, entries), durable=True)
            pos = await accept
            rpos = await routed if routed is not None else None
            if msg.msg_id not in self._state.messages or pos is None:
                continue
            # The copy is on disk: the old frames no longer matter.
            for seq in self._state.unpin_all(msg):
                self._delete_segment(seq)
            msg.seq, msg.offset, msg.length, msg.body_offset = (
                pos[0],
                pos[1],
                len(frame),
                body_offset,
            )
            self._state.pin(msg, pos[0])
            if rpos is not None:
                self._state.pin(msg, rpos[0])
            copied += 1
        self._note_rotation()
        if copied:
            log.info("spool compacted messages=%d", copied)
        return copied

    # -- migration from the file-per-message layout ------------------------------------

    def _migrate(self) -> int:
        """Write an old layout's messages into the journal (synced), then remove the old files."""
        count = 0
        frames: list[bytes] = []
        migrated: list[Path] = []
        for item in legacy.import_old(self.root):
            if isinstance(item, tuple):
                path, why = item
                log.error("spool old-file-damaged file=%s why=%s (left in place)", path, why)
                continue
            frame, _ = fr.accept(item.msg_id, item.env, item.body)
            frames.append(frame)
            sub = "msg" if item.routed else "incoming"
            migrated.append(self.root / sub / item.msg_id)
            if item.routed:
                frames.append(fr.route(item.msg_id, item.records))
                migrated.extend(self.root / "q" / q / rid for q, rid, _ in item.records)
            count += 1
        if frames:
            self.journal.write_now(frames)
        # Replay what was just written so the index has it, like any start.
        self._state, _ = replay(self.root, self.journal)
        self._incoming.clear()
        self._queues.clear()
        for msg in sorted(self._state.messages.values(), key=lambda m: (m.seq, m.offset)):
            if not msg.routed:
                self._incoming[msg.msg_id] = None
            for rid, (queue, env) in msg.records.items():
                self._queues.setdefault(queue, {})[rid] = env.next_try
        # Only what is now in the journal goes; damaged old files stay for the admin.
        tmp = self.root / "tmp"
        migrated.extend(tmp / n for n in os.listdir(tmp)) if tmp.is_dir() else None
        for path in migrated:
            path.unlink(missing_ok=True)
        log.info("spool migrated messages=%d from the file-per-message layout", count)
        return count

    # -- reporting ----------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Messages waiting per queue, plus incoming and quarantine."""
        out = {"incoming": len(self._incoming)}
        for queue, records in self._queues.items():
            out[queue] = len(records)
        out["quarantine"] = len(qfiles.names(self.root)) if self._opened else 0
        return out

    def records(self, queue: str) -> list[str]:
        """Every record id in a queue (claimed or not), for status and tests."""
        return list(self._queues.get(queue, {}))
