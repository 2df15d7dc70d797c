"""Queue management for the outbound and badmail queues: what `mailplat queue ...` and
`mailplat badmail ...` do inside the running server (through its control socket).

Input: the server's Spool (plus its Directory and inject for bounces and
re-routing) and the clock's now. Output: plain data (Entry, JSON-ready) and
small actions. Every action claims the record first, exactly as a delivery
worker does, so an admin action never races a delivery in flight: a record
being sent right now raises Busy and the admin simply tries again.
Nothing here loses mail (DESIGN.md §6.3): `delete` moves a queued message to
badmail, and only deleting from badmail removes it; `bounce` returns the
message to its sender (or to badmail when no report may be sent).
Callers kick the OutboundDelivery after retry/resend so it acts at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from mailplat.config.directory import Directory
from mailplat.connectors.smtp_out.deliver import BADMAIL, HELD, LAST_ERROR, QUEUE
from mailplat.connectors.smtp_out.policy import DELAY_NOTIFIED
from mailplat.core.envelope import Envelope
from mailplat.core.errors import MailplatError
from mailplat.message import dsn
from mailplat.message.headers import header_block
from mailplat.spool.api import Damaged, SpoolBackend

log = logging.getLogger("mailplat.queue")

Inject = Callable[[Envelope, bytes], Awaitable[str]]

# Meta a resend clears: the history of the attempts that failed.
_HISTORY = ("badmail", "queue", LAST_ERROR, "last-attempt", DELAY_NOTIFIED)


class NotFound(MailplatError):
    """No such record in that queue."""

    exit_code = 3


class Busy(MailplatError):
    """The record is being delivered right now; try again in a moment."""

    exit_code = 4


@dataclass(frozen=True, slots=True)
class Entry:
    """One queued (or badmail) message as `queue list` shows it."""

    id: str
    queue: str
    sender: str
    rcpts: tuple[str, ...]
    size: int
    received_at: float
    attempts: int
    next_try: float
    last_error: str
    reason: str  # why it is in badmail
    busy: bool  # a worker is sending it now
    trace_id: str

    def age(self, now: float) -> float:
        return max(0.0, now - self.received_at)

    def to_json(self, now: float) -> dict[str, object]:
        return {
            "id": self.id,
            "queue": self.queue,
            "trace_id": self.trace_id,
            "sender": self.sender,
            "recipients": list(self.rcpts),
            "size": self.size,
            "received_at": self.received_at,
            "age_seconds": round(self.age(now), 1),
            "attempts": self.attempts,
            "next_try": self.next_try,
            "last_error": self.last_error,
            "reason": self.reason,
            "busy": self.busy,
        }


def _entry(spool: SpoolBackend, queue: str, rid: str) -> Entry:
    try:
        env, msg_id = spool.read_record(queue, rid)
    except FileNotFoundError as exc:
        raise NotFound(f"no message {rid} in queue {queue}") from exc
    try:
        size = len(spool.read_message(msg_id))
    except (OSError, Damaged):
        size = -1  # the message file is gone or damaged: shown, not hidden
    return Entry(
        id=rid,
        queue=queue,
        sender=env.mail_from,
        rcpts=env.rcpts,
        size=size,
        received_at=env.received_at,
        attempts=env.attempts,
        next_try=env.next_try,
        last_error=env.get(LAST_ERROR),
        reason=env.get("badmail"),
        busy=not _free(spool, queue, rid),
        trace_id=env.trace_id,
    )


def _free(spool: SpoolBackend, queue: str, rid: str) -> bool:
    if spool.claim(queue, rid):
        spool.release(queue, rid)
        return True
    return False


def entries(spool: SpoolBackend, queue: str = QUEUE) -> list[Entry]:
    """Every record of a queue, oldest first; unreadable ones are skipped."""
    out = []
    for rid in spool.records(queue):
        try:
            out.append(_entry(spool, queue, rid))
        except (NotFound, ValueError):
            continue
    return sorted(out, key=lambda e: (e.received_at, e.id))


def show(spool: SpoolBackend, queue: str, rid: str) -> tuple[Entry, Envelope, bytes]:
    """One record: its entry, full envelope (meta included) and the message headers."""
    entry = _entry(spool, queue, rid)
    env, msg_id = spool.read_record(queue, rid)
    try:
        headers = header_block(spool.read_message(msg_id))
    except (OSError, Damaged):
        headers = b""
    return entry, env, headers


def _claim(spool: SpoolBackend, queue: str, rid: str) -> None:
    if rid not in spool.records(queue):
        raise NotFound(f"no message {rid} in queue {queue}")
    if not spool.claim(queue, rid):
        raise Busy(f"message {rid} is being delivered right now; try again")


async def retry(spool: SpoolBackend, ids: Iterable[str] | None, now: float) -> list[str]:
    """Make records due now (None: the whole smtp queue); the ids changed.

    With explicit ids a missing or busy record raises; with --all they are skipped.
    """
    chosen = list(ids) if ids is not None else spool.records(QUEUE)
    done: list[str] = []
    for rid in chosen:
        try:
            _claim(spool, QUEUE, rid)
        except (NotFound, Busy):
            if ids is not None:
                raise
            continue
        try:
            env, _ = spool.read_record(QUEUE, rid)
            await spool.update(QUEUE, rid, replace(env, next_try=now))
            done.append(rid)
        finally:
            spool.release(QUEUE, rid)
    return done


async def delete(spool: SpoolBackend, queue: str, rid: str, now: float) -> str:
    """Take a message out of a queue: to badmail from smtp, for good from badmail.

    Returns where it went ("badmail" or "deleted").
    """
    _claim(spool, queue, rid)
    try:
        if queue == BADMAIL:
            await spool.done(BADMAIL, rid)
            return "deleted"
        env, _ = spool.read_record(queue, rid)
        env = env.with_meta("badmail", "deleted by the administrator").with_meta("queue", queue)
        await spool.move(queue, rid, BADMAIL, replace(env, next_try=now))
        return BADMAIL
    finally:
        spool.release(queue, rid)
        spool.release(BADMAIL, rid)


async def bounce(
    spool: SpoolBackend, directory: Directory, inject: Inject, rid: str, now: float
) -> str:
    """Return a queued message to its sender now; "bounced", or "badmail" when no
    report may go out (null sender, no_ndr)."""
    _claim(spool, QUEUE, rid)
    try:
        env, msg_id = spool.read_record(QUEUE, rid)
        data = spool.read_message(msg_id)
        last = env.get(LAST_ERROR)
        why = "returned to the sender by the administrator" + (
            f"; last error: {last}" if last else ""
        )
        statuses = [
            dsn.RecipientStatus(
                rcpt=r, action="failed", status="5.0.0", diagnostic=f"x-mailplat; {why}"
            )
            for r in env.rcpts
        ]
        made = dsn.bounce_for(directory, env, data, statuses)
        if made is None:
            parked = env.with_meta("badmail", "bounced by the administrator; sender not notified")
            await spool.move(QUEUE, rid, BADMAIL, parked.with_meta("queue", QUEUE))
            return BADMAIL
        notice_id = await inject(*made)
        log.info(
            "queue bounce id=%s parent=%s to=%s (by the administrator)",
            notice_id,
            env.trace_id,
            env.mail_from,
        )
        await spool.done(QUEUE, rid)
        return "bounced"
    finally:
        spool.release(QUEUE, rid)
        spool.release(BADMAIL, rid)


async def resend(spool: SpoolBackend, rid: str, inject: Inject, now: float) -> str:
    """Give a badmail message another go; the queue it went to.

    A message given up by outbound delivery goes back to its queue with a
    fresh attempt count. Anything else (the MTA found no destination) is
    routed again from the start under the current config.
    """
    _claim(spool, BADMAIL, rid)
    try:
        env, msg_id = spool.read_record(BADMAIL, rid)
        origin = env.get("queue")
        meta = tuple((k, v) for k, v in env.meta if k not in _HISTORY and not k.startswith(HELD))
        fresh = replace(env, attempts=0, next_try=now, meta=meta)
        if origin == QUEUE:
            await spool.move(BADMAIL, rid, QUEUE, fresh)
            return QUEUE
        data = spool.read_message(msg_id)
        await inject(fresh, data)
        await spool.done(BADMAIL, rid)
        return "incoming"
    finally:
        spool.release(BADMAIL, rid)
        spool.release(QUEUE, rid)
