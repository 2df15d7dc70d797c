"""The MTA agent: moves messages from incoming/ to the outbound queues.

Loop: wait for a kick (a message was accepted) or the poll interval, take up
to WINDOW incoming messages oldest first, route each against the current
Directory, bounce what cannot be delivered, and commit the records with one
durable spool.route() per message (the incoming file is renamed, never
copied). Files the spool quarantined (damaged; see spool/quarantine.py) are
announced to their senders from here, once each: the notice is durable in
incoming/ before the entry is marked notified, so a crash repeats it at
worst. Messages are routed concurrently inside the window so their fsyncs
share group commits. A crash at any point leaves the message in incoming/,
and recovery drops its half-written records: it is routed again, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from mailplat.config.directory import Directory
from mailplat.config.expand import Destination
from mailplat.core.envelope import Envelope
from mailplat.core.worker import Worker
from mailplat.message import dsn
from mailplat.mta.router import route
from mailplat.spool.api import Damaged, SpoolBackend

log = logging.getLogger("mailplat.mta")

WINDOW = 64
COMPACT_EVERY_SECONDS = 60.0


async def bounce(
    spool: SpoolBackend,
    directory: Directory,
    env: Envelope,
    data: bytes,
    statuses: list[dsn.RecipientStatus],
) -> str | None:
    """Queue a DSN to the sender (none for a null sender or with no_ndr set)."""
    made = dsn.bounce_for(directory, env, data, statuses)
    if made is None:
        log.info("mta no-bounce id=%s (null sender or no_ndr)", env.trace_id)
        return None
    queue_id = await spool.receive(*made)
    log.info("mta bounce id=%s parent=%s to=%s", queue_id, env.trace_id, env.mail_from)
    return queue_id


def _status(dest: Destination) -> dsn.RecipientStatus:
    return dsn.RecipientStatus(
        rcpt=dest.target,
        original_rcpt=dest.rcpt,
        action="failed",
        status="5.1.1",
        diagnostic=f"x-mailplat; {dest.reason}",
    )


class Agent(Worker):
    """Routes incoming messages; wakes the connectors whose queues got records."""

    def __init__(
        self,
        spool: SpoolBackend,
        directory: Callable[[], Directory],
        wake: Callable[[str], None],
        poll_seconds: float = 5.0,
        directory_for: Callable[[str], Directory | None] | None = None,
    ) -> None:
        super().__init__()
        self.spool = spool
        self.directory = directory
        self.directory_for = directory_for
        self.wake = wake
        self.poll_seconds = poll_seconds
        self._busy: set[str] = set()
        self.routed = 0
        # Recovery may have quarantined files at open: look once at the start,
        # then whenever the spool reports a new one.
        self._notices_due = True
        spool.on_quarantine = self._quarantine_seen

    def _quarantine_seen(self) -> None:
        self._notices_due = True
        self.kick()

    async def run(self) -> None:
        compacted = time.monotonic()
        while not self.stopping:
            await self.wait_for_kick(self.poll_seconds)
            await self.drain()
            if time.monotonic() - compacted > COMPACT_EVERY_SECONDS:
                # Long-lived (deferred, badmail) messages are copied forward so the
                # old journal segments they kept alive can be deleted.
                compacted = time.monotonic()
                await self.spool.compact()

    async def drain(self) -> None:
        """Route everything waiting in incoming/, a window at a time, one commit per window."""
        if self._notices_due:
            self._notices_due = False
            await self.notify_quarantined()
        while True:
            batch = [m for m in self.spool.incoming() if m not in self._busy][:WINDOW]
            if not batch:
                return
            self._busy.update(batch)
            try:
                await self.route_batch(batch)
            finally:
                self._busy.difference_update(batch)

    async def notify_quarantined(self) -> None:
        """Tell each sender whose message was quarantined with a readable envelope, once."""
        for entry in self.spool.pending_notices():
            name = str(entry["name"])
            msg_id = str(entry.get("id", ""))
            rcpts = entry.get("rcpts")
            env = Envelope(
                mail_from=str(entry.get("from", "")),
                rcpts=tuple(str(r) for r in rcpts) if isinstance(rcpts, list) else (),
                trace_id=msg_id,
                received_at=float(str(entry.get("received_at", 0.0))),
            )
            why = str(entry.get("why", "damaged"))
            made = dsn.lost_for(self.directory(), env, why, bool(entry.get("body_lost", True)))
            notice_id = ""
            if made is not None:
                notice_id = await self.spool.receive(*made)
                log.info(
                    "mta quarantine-notice id=%s parent=%s to=%s entry=%s",
                    notice_id,
                    msg_id,
                    env.mail_from,
                    name,
                )
            else:
                log.info("mta no-bounce id=%s entry=%s (null sender or no_ndr)", msg_id, name)
            await self.spool.mark_notified(name, notice_id or "-")

    def _directory_of(self, env: Envelope) -> Directory:
        """The config the message was accepted under when still known, else the current one."""
        digest = env.get("config")
        if digest and self.directory_for is not None:
            found = self.directory_for(digest)
            if found is not None:
                return found
        return self.directory()

    async def process(self, msg_id: str) -> None:
        """Route one incoming message (drain does whole windows)."""
        await self.route_batch([msg_id])

    async def route_batch(self, batch: list[str]) -> None:
        decided: list[tuple[str, Envelope, list[tuple[str, Envelope]]]] = []
        for msg_id in batch:
            try:
                env, data = self.spool.read_incoming(msg_id)
            except Damaged as exc:  # set aside once; quarantine logs it and its notice follows
                await self.spool.quarantine_incoming(msg_id, exc.why)
                continue
            directory = self._directory_of(env)
            routing = route(env, directory)
            if routing.rejected:
                # The bounce is a new message, durable before the original's
                # routing commits: a crash in between repeats it, never loses it.
                statuses = [_status(d) for d in routing.rejected]
                await bounce(self.spool, directory, env, data, statuses)
                self.kick()
            decided.append((msg_id, env, routing.records))
            for queue, record in routing.records:
                log.info(
                    "mta routed id=%s queue=%s rcpts=%s config=%s",
                    env.trace_id,
                    queue,
                    ",".join(record.rcpts),
                    directory.digest[:12],
                )
        await self.spool.route_many([(msg_id, records) for msg_id, _, records in decided])
        self.routed += len(decided)
        for queue in {queue for _, _, records in decided for queue, _ in records}:
            self.wake(queue)
