"""The durable spool: accepted messages and the queue records that route them.

Layout under the spool root:

    tmp/            files being written (deleted at recovery)
    incoming/<id>   accepted, fsynced, not yet routed (envelope + bytes)
    msg/<id>        the same file after routing; read by every record of it
    q/<queue>/<id>.<n>  one record per destination queue (envelope + msg id)
    quarantine/     files recovery or a worker could not trust, kept for the admin
                    (each with an info file, see quarantine.py)

Guarantees (DESIGN.md §5): receive() returns only after the message file and
its directory entry are fsynced, so a 250 is never given for mail a crash can
lose. route() writes the records durably first and then renames the message
out of incoming/ (a rename, never a copy); recovery (recover.py) makes any
crash in between route the message again, exactly once. done() removes a
record and, with the last record, the message.

A file found damaged when a worker reads it (read_record, read_message,
read_incoming raise Damaged) is set aside once with quarantine_record or
quarantine_incoming: never retried, logged in one line, and, when its
envelope is readable, left for the MTA agent to tell the sender.

The in-memory index (which records exist, when each is due, which are
claimed by a worker) is rebuilt from disk at open() and kept in step with
every write; it is only touched from the event loop thread.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from mailplat.core.envelope import Envelope
from mailplat.core.errors import TemporaryFailure
from mailplat.core.ids import is_id, new_id
from mailplat.spool import quarantine as qfiles
from mailplat.spool import record
from mailplat.spool.faults import fault
from mailplat.spool.recover import Index, RecoveryReport, msg_of, quarantine, recover
from mailplat.spool.syncer import DirSyncer, fsync_dir, write_durable

log = logging.getLogger("mailplat.spool")

# fsync is I/O wait, not CPU: many in flight at once let the filesystem fold
# them into shared journal commits.
FSYNC_THREADS = 32
BODY_CACHE_BYTES = 64 * 1024 * 1024
CLEAN_STOP = "clean-stop"
T = TypeVar("T")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class Damaged(Exception):
    """A spool file a worker needs is not whole (truncated, bad checksum) or is missing."""

    def __init__(self, kind: str, path: Path, why: str) -> None:
        super().__init__(f"{kind} file {path.parent.name}/{path.name}: {why}")
        self.kind = kind  # "message", "record" or "incoming"
        self.path = path
        self.why = why


class Spool:
    """One spool directory; see the module docstring for layout and guarantees."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._executor = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="spool-io")
        self.syncer = DirSyncer(self._executor)
        self._index = Index()
        self._incoming: dict[str, None] = {}  # insertion-ordered set
        self._claimed: dict[str, set[str]] = {}
        self._opened = False
        self._tmp_seq = itertools.count()
        # The spool is owned by this one process, so what it wrote it can also
        # remember: message bytes and record envelopes are served from memory
        # (bounded) instead of being read back from disk at every stage.
        self._bodies: OrderedDict[str, tuple[Envelope, bytes]] = OrderedDict()
        self._bodies_bytes = 0
        self._envelopes: dict[tuple[str, str], Envelope] = {}
        self._after_crash: set[tuple[str, str]] = set()
        self._reserved: set[str] = set()
        # Called after a file is quarantined: the MTA agent sets it to its kick,
        # so the sender's notice goes out now rather than at the next poll.
        self.on_quarantine: Callable[[], None] | None = None

    # -- lifecycle ----------------------------------------------------------------

    def open(self) -> RecoveryReport:
        """Create the layout if needed and recover what a crash left (blocking)."""
        fresh = not (self.root / "incoming").exists()
        for sub in ("tmp", "incoming", "msg", "q", "quarantine"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._index, report = recover(self.root)
        self._incoming = dict.fromkeys(self._index.incoming)
        # No clean-stop marker means the last run crashed: any record found may
        # have been delivered just before the crash and is flagged, so its
        # delivery is logged as a possible duplicate (RELIABILITY.md §2).
        marker = self.root / CLEAN_STOP
        if marker.exists() or fresh:
            marker.unlink(missing_ok=True)
        else:
            report.after_crash = True
            self._after_crash = {
                (queue, rid) for queue, records in self._index.queues.items() for rid in records
            }
        self._opened = True
        return report

    def close(self) -> None:
        """Stop the I/O threads and leave the clean-stop marker for the next open()."""
        self._executor.shutdown(wait=True)
        if self._opened:
            (self.root / CLEAN_STOP).touch()

    def possible_duplicate(self, queue: str, record_id: str) -> bool:
        """True when this record survived a crash: its work may already have been done once."""
        return (queue, record_id) in self._after_crash

    def _qdir(self, queue: str) -> Path:
        path = self.root / "q" / queue
        if queue not in self._index.queues:
            path.mkdir(parents=True, exist_ok=True)
            self._index.queues[queue] = {}
        return path

    def _tmp(self, name: str) -> Path:
        """A tmp/ path no other write in this process uses, even a cancelled one."""
        return self.root / "tmp" / f"{name}.{next(self._tmp_seq)}"

    async def _io(self, func: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    # -- accepting ----------------------------------------------------------------

    async def receive(self, env: Envelope, data: bytes) -> str:
        """Store a message durably in incoming/; its id once file and dir are on disk.

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
        # Reserved before the first await: two receives of one trace id at
        # once must not write the same incoming/ file.
        self._reserved.add(msg_id)
        blob = record.encode(env, msg_id, data)
        final = self.root / "incoming" / msg_id
        try:
            await self._io(write_durable, self._tmp(msg_id), final, blob)
            fault("spool.renamed")
            await self.syncer.sync(final.parent)
        except OSError as exc:
            final.unlink(missing_ok=True)
            kind = "disk full" if exc.errno in _NO_SPACE else "write failed"
            log.error("spool %s id=%s why=%s", kind, msg_id, exc)
            raise TemporaryFailure(f"spool {kind}: {exc.strerror}") from exc
        finally:
            self._reserved.discard(msg_id)
        self._incoming[msg_id] = None
        self._remember(msg_id, env, data)
        return msg_id

    def _taken(self, msg_id: str) -> bool:
        """True when a message of this id is in the spool (the index is complete after open)."""
        return msg_id in self._incoming or msg_id in self._index.refs or msg_id in self._reserved

    def _remember(self, msg_id: str, env: Envelope, data: bytes) -> None:
        self._bodies[msg_id] = (env, data)
        self._bodies_bytes += len(data)
        while self._bodies_bytes > BODY_CACHE_BYTES and len(self._bodies) > 1:
            _, (_, old) = self._bodies.popitem(last=False)
            self._bodies_bytes -= len(old)

    def _forget(self, msg_id: str) -> None:
        cached = self._bodies.pop(msg_id, None)
        if cached is not None:
            self._bodies_bytes -= len(cached[1])

    def incoming(self) -> list[str]:
        """Ids in incoming/, oldest first."""
        return list(self._incoming)

    def read_incoming(self, msg_id: str) -> tuple[Envelope, bytes]:
        cached = self._bodies.get(msg_id)
        if cached is not None:
            return cached
        path = self.root / "incoming" / msg_id
        try:
            rec = record.decode(path.read_bytes())
        except record.CorruptRecord as exc:
            raise Damaged("incoming", path, str(exc)) from exc
        return rec.envelope, rec.body

    async def quarantine_incoming(self, msg_id: str, why: str = "unreadable") -> None:
        """Set a damaged incoming/ file aside; its sender is told when its envelope is readable."""
        path = self.root / "incoming" / msg_id
        if path.exists():
            env = record.salvage_envelope(await self._io(path.read_bytes))
            await self._io(
                lambda: quarantine(self.root, path, why, env, kind="incoming", body_lost=True)
            )
        self._incoming.pop(msg_id, None)
        self._forget(msg_id)
        self._quarantined()

    def _quarantined(self) -> None:
        if self.on_quarantine is not None:
            self.on_quarantine()

    # -- routing ------------------------------------------------------------------

    def _commit_routes(
        self, routed: list[tuple[str, list[tuple[Path, bytes]]]], dropped: list[str]
    ) -> None:
        """Records durable first (files, then their directories), then the moves.

        One worker-thread call for a whole batch: every record file is fsynced,
        but each directory only once per batch, which is the group commit of
        routing. A crash before the renames leaves every message in incoming/
        and recovery drops its records; after them, all records are on disk.
        """
        qdirs: set[Path] = set()
        for _, items in routed:
            for final, blob in items:
                write_durable(self._tmp(final.name), final, blob)
                qdirs.add(final.parent)
        for qdir in qdirs:
            fsync_dir(qdir)
        fault("spool.records-written")
        for msg_id, _ in routed:
            os.replace(self.root / "incoming" / msg_id, self.root / "msg" / msg_id)
        for msg_id in dropped:
            (self.root / "incoming" / msg_id).unlink(missing_ok=True)
        if routed:
            fsync_dir(self.root / "msg")
        fsync_dir(self.root / "incoming")

    async def route(self, msg_id: str, records: Iterable[tuple[str, Envelope]]) -> None:
        """Commit the routing of one incoming message (see route_many)."""
        await self.route_many([(msg_id, list(records))])

    async def route_many(self, batch: list[tuple[str, list[tuple[str, Envelope]]]]) -> None:
        """Commit the routing of incoming messages: their records, then the moves.

        A message with no records (every recipient bounced) is simply removed.
        """
        routed: list[tuple[str, list[tuple[Path, bytes]]]] = []
        entries_of: dict[str, list[tuple[str, str, Envelope]]] = {}
        dropped: list[str] = []
        for msg_id, records in batch:
            entries = [(queue, f"{msg_id}.{i}", env) for i, (queue, env) in enumerate(records)]
            if not entries:
                dropped.append(msg_id)
                continue
            entries_of[msg_id] = entries
            routed.append(
                (
                    msg_id,
                    [(self._qdir(q) / rid, record.encode(env, msg_id)) for q, rid, env in entries],
                )
            )
        await self._io(self._commit_routes, routed, dropped)
        for msg_id, entries in entries_of.items():
            self._index.refs[msg_id] = len(entries)
            for queue, rid, env in entries:
                self._index.queues[queue][rid] = env.next_try
                self._envelopes[(queue, rid)] = env
            self._incoming.pop(msg_id, None)
        for msg_id in dropped:
            self._forget(msg_id)
            self._incoming.pop(msg_id, None)

    # -- consuming ----------------------------------------------------------------

    def due(self, queue: str, now: float, limit: int) -> list[str]:
        """Up to limit unclaimed record ids whose next try has come, earliest first."""
        records = self._index.queues.get(queue)
        if not records:
            return []
        claimed = self._claimed.get(queue, set())
        ready = ((t, rid) for rid, t in records.items() if t <= now and rid not in claimed)
        return [rid for _, rid in heapq.nsmallest(limit, ready)]

    def next_due(self, queue: str) -> float | None:
        """When the earliest unclaimed record of a queue is due (None when empty)."""
        records = self._index.queues.get(queue)
        if not records:
            return None
        claimed = self._claimed.get(queue, set())
        times = [t for rid, t in records.items() if rid not in claimed]
        return min(times) if times else None

    def claim(self, queue: str, record_id: str) -> bool:
        """Take a record for one worker; False when another has it or it is gone."""
        claimed = self._claimed.setdefault(queue, set())
        if record_id in claimed or record_id not in self._index.queues.get(queue, {}):
            return False
        claimed.add(record_id)
        return True

    def release(self, queue: str, record_id: str) -> None:
        self._claimed.get(queue, set()).discard(record_id)

    def read_record(self, queue: str, record_id: str) -> tuple[Envelope, str]:
        """A record's envelope and message id; FileNotFoundError when there is no such
        record, Damaged when its file is not whole."""
        env = self._envelopes.get((queue, record_id))
        if env is not None:
            return env, msg_of(record_id)
        path = self.root / "q" / queue / record_id
        try:
            rec = record.decode(path.read_bytes())
        except record.CorruptRecord as exc:
            raise Damaged("record", path, str(exc)) from exc
        return rec.envelope, rec.msg_id

    def read_message(self, msg_id: str) -> bytes:
        """A routed message's bytes; Damaged when its file is missing or not whole."""
        cached = self._bodies.get(msg_id)
        if cached is not None:
            return cached[1]
        path = self.root / "msg" / msg_id
        try:
            rec = record.decode(path.read_bytes())
        except FileNotFoundError as exc:
            set_aside = (self.root / qfiles.DIR / f"msg-{msg_id}").exists()
            why = "damaged, in quarantine" if set_aside else "missing"
            raise Damaged("message", path, why) from exc
        except record.CorruptRecord as exc:
            raise Damaged("message", path, str(exc)) from exc
        # Read once from disk (after a restart): its other records use this copy.
        self._remember(msg_id, rec.envelope, rec.body)
        return rec.body

    async def quarantine_record(self, queue: str, record_id: str, damage: Damaged) -> None:
        """Take a record whose record or message file is damaged out of its queue, for good.

        The record file goes to quarantine/ with what its envelope says (so
        the MTA agent can tell the sender what was lost, once); the message
        file goes too when it is the damaged one, or when this was its last
        record (its text is then kept for the admin, not deleted). The caller
        still releases its claim. One log line.
        """
        msg_id = msg_of(record_id)
        rpath = self.root / "q" / queue / record_id
        mpath = self.root / "msg" / msg_id
        env = self._envelopes.get((queue, record_id))
        if env is None and rpath.exists():
            env = record.salvage_envelope(await self._io(rpath.read_bytes))
        body_lost = damage.kind == "message"
        left = self._index.refs.get(msg_id, 1) - 1

        moved: list[str] = []

        def move() -> None:
            if rpath.exists():
                why = damage.why if damage.kind == "record" else f"its message file is {damage.why}"
                quarantine(
                    self.root,
                    rpath,
                    why,
                    env,
                    quiet=True,
                    kind="record",
                    queue=queue,
                    record=record_id,
                    body_lost=body_lost,
                )
                moved.append(f"q/{queue}/{record_id}")
            if mpath.exists() and (body_lost or left <= 0):
                why = damage.why if body_lost else "its last queue record was damaged"
                quarantine(self.root, mpath, why, quiet=True, kind="message")
                moved.append(f"msg/{msg_id}")

        await self._io(move)
        self._index.queues.get(queue, {}).pop(record_id, None)
        self._envelopes.pop((queue, record_id), None)
        self._after_crash.discard((queue, record_id))
        if left > 0:
            self._index.refs[msg_id] = left
        else:
            self._index.refs.pop(msg_id, None)
        if body_lost or left <= 0:
            self._forget(msg_id)
        log.error(
            "spool quarantined id=%s record=%s files=%s why=%s (damaged %s file; not retried)",
            msg_id,
            record_id,
            ",".join(moved) or "-",
            damage.why,
            damage.kind,
        )
        self._quarantined()

    # -- quarantine ----------------------------------------------------------------

    def quarantined(self) -> list[dict[str, object]]:
        """Every quarantined file's info (quarantine.py), oldest first."""
        return qfiles.entries(self.root)

    def quarantine_entry(self, name: str) -> tuple[dict[str, object], bytes]:
        """One entry's info and the start of its file; FileNotFoundError when there is none."""
        if name not in qfiles.names(self.root):
            raise FileNotFoundError(name)
        return qfiles.read_info(self.root, name), qfiles.content(self.root, name)

    def pending_notices(self) -> list[dict[str, object]]:
        """Quarantined entries whose sender has not been told yet."""
        return qfiles.pending_notices(self.root)

    async def mark_notified(self, name: str, notice_id: str) -> None:
        await self._io(qfiles.mark_notified, self.root, name, notice_id)

    async def done(self, queue: str, record_id: str) -> None:
        """The record's work is finished: remove it, and the message with its last record."""
        # The unlink is not fsynced: if a crash loses it, the record comes back
        # and its delivery is repeated, the duplicate RELIABILITY.md §2 allows
        # for a crash before "done" is recorded. Nothing can be lost this way.
        (self.root / "q" / queue / record_id).unlink(missing_ok=True)
        fault("spool.done-unlinked")
        self._index.queues.get(queue, {}).pop(record_id, None)
        self._envelopes.pop((queue, record_id), None)
        self._after_crash.discard((queue, record_id))
        self._drop_ref(msg_of(record_id))

    def _drop_ref(self, msg_id: str) -> None:
        left = self._index.refs.get(msg_id, 1) - 1
        if left > 0:
            self._index.refs[msg_id] = left
            return
        self._index.refs.pop(msg_id, None)
        self._forget(msg_id)
        # Not fsynced on purpose: a lost unlink leaves an orphan that recovery removes.
        (self.root / "msg" / msg_id).unlink(missing_ok=True)

    async def update(self, queue: str, record_id: str, env: Envelope) -> None:
        """Replace a record's envelope (attempts, next try, remaining recipients)."""
        path = self.root / "q" / queue / record_id
        blob = record.encode(env, msg_of(record_id))
        await self._io(write_durable, self._tmp(record_id), path, blob)
        await self.syncer.sync(path.parent)
        if record_id in self._index.queues.get(queue, {}):
            self._index.queues[queue][record_id] = env.next_try
            self._envelopes[(queue, record_id)] = env

    async def move(
        self, queue: str, record_id: str, new_queue: str, env: Envelope | None = None
    ) -> None:
        """Move a record to another queue with one rename (updating it first if asked)."""
        if env is not None:
            await self.update(queue, record_id, env)
        source = self.root / "q" / queue / record_id
        target = self._qdir(new_queue) / record_id
        await self._io(os.replace, source, target)
        await self.syncer.sync_all({source.parent, target.parent})
        next_try = self._index.queues.get(queue, {}).pop(record_id, 0.0)
        self._index.queues[new_queue][record_id] = env.next_try if env else next_try
        moved = self._envelopes.pop((queue, record_id), None)
        if moved is not None:
            self._envelopes[(new_queue, record_id)] = moved

    # -- reporting ----------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Messages waiting per queue, plus incoming/ and quarantine/."""
        out = {"incoming": len(self._incoming)}
        for queue, records in self._index.queues.items():
            out[queue] = len(records)
        out["quarantine"] = len(qfiles.names(self.root)) if self._opened else 0
        return out

    def records(self, queue: str) -> list[str]:
        """Every record id in a queue (claimed or not), for status and tests."""
        return list(self._index.queues.get(queue, {}))
