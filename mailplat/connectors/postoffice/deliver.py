"""Local delivery: postoffice queue records -> Maildir files.

For each record (one message, several mailbox keys) and each mailbox: check
the quota (over quota -> a DSN to the sender), prepend Return-Path,
Delivered-To and the catchall header, write into the Maildir (tmp -> fsync
-> link into new/, in a worker thread so the loop never blocks on fsync),
then run the autoresponder and delivery event. A delivered record stays
claimed until its new/ links are on disk: the folders are fsynced together
for every record delivered within COMPLETE_DELAY (one fsync per folder per
window, however many messages), and only then is the record marked done. So
the synchronous flushes per message are the spool's shared one and the
Maildir file's own, and a crash repeats a delivery (logged as a possible
duplicate) but never loses one.
With delivery.hold set, nothing is delivered: records wait in the queue. A record whose record or message file is
damaged on disk is quarantined once (the spool logs it; the MTA agent tells
the sender), never retried.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import parseaddr
from pathlib import Path

from mailplat.auth.memory import ExpiringMemory
from mailplat.config.directory import Directory, MailboxEntry
from mailplat.core.durable import fsync_dir
from mailplat.core.envelope import Envelope
from mailplat.core.ids import new_id
from mailplat.core.worker import Worker
from mailplat.message import dsn, headers
from mailplat.spool import history
from mailplat.spool.api import Damaged, SpoolBackend
from mailplat.store.maildir import Maildir, junk_folder
from mailplat.store.paths import mailbox_dir
from mailplat.store.quota import QuotaTracker

log = logging.getLogger("mailplat.delivery")

QUEUE = "postoffice"
WINDOW = 32
IO_THREADS = 32
COMPLETE_DELAY = 0.02  # seconds of deliveries whose new/ folders share one fsync
AUTOREPLY_MEMORY_MINUTES = 4 * 24 * 60  # one reply per sender per 4 days (RFC 3834 §2)

Inject = Callable[[Envelope, bytes], Awaitable[str]]


def _token(value: str | None) -> str:
    """The keyword of a header value, without parameters or comments: `auto-replied (x)`."""
    return (value or "").split(";", 1)[0].split("(", 1)[0].strip().lower()


def is_bulk(data: bytes) -> bool:
    """Mail an autoresponder or delivery event must not answer (RFC 3834 §2)."""
    precedence = _token(headers.get_header(data, "Precedence"))
    auto = _token(headers.get_header(data, "Auto-Submitted")) or "no"
    return (
        precedence in ("bulk", "list", "junk")
        or auto != "no"
        or headers.has_header(data, "List-Id")
        or headers.has_header(data, "List-Unsubscribe")
    )


# RFC 3834 §2: programs, list servers and their owners are never answered.
_DAEMONS = frozenset({"mailer-daemon", "postmaster", "listserv", "majordomo", "bounce", "bounces"})
_NO_REPLY = ("noreply", "donotreply")  # after dropping "-", "_" and "."


def is_automatic_sender(address: str) -> bool:
    """True for a sender that is a program or a list: mailer-daemon, *-request, owner-*,
    *-owner, noreply and its spellings (no-reply, do-not-reply, noreply+tag, ...)."""
    local = address.rsplit("@", 1)[0].strip().strip('<>"').lower()
    base = local.split("+", 1)[0]
    squeezed = base.replace("-", "").replace("_", "").replace(".", "")
    return (
        base in _DAEMONS
        or base.startswith("owner-")
        or base.endswith(("-owner", "-request"))
        or squeezed.startswith(_NO_REPLY)
    )


def autoreply_refusal(env: Envelope, data: bytes) -> str | None:
    """Why this message gets no auto-reply (RFC 3834 §2), or None when it may get one."""
    if not env.mail_from:
        return "null sender"
    if is_automatic_sender(env.mail_from):
        return "automatic sender"
    sender = parseaddr(headers.get_header(data, "From") or "")[1]
    if sender and is_automatic_sender(sender):
        return "automatic From"
    if is_bulk(data):
        return "bulk, list or auto-submitted mail"
    suppress = (headers.get_header(data, "X-Auto-Response-Suppress") or "").lower()
    if any(word in suppress for word in ("all", "oof", "autoreply")):
        return "X-Auto-Response-Suppress"
    return None


class LocalDelivery(Worker):
    """Consumes the postoffice queue."""

    def __init__(
        self,
        spool: SpoolBackend,
        directory: Callable[[], Directory],
        data_root: Path,
        inject: Inject,
        quota: QuotaTracker,
        replied: ExpiringMemory | None = None,
    ) -> None:
        super().__init__()
        self.spool = spool
        self.directory = directory
        self.data_root = data_root
        self.inject = inject
        self.quota = quota
        # Who got an autoreply from whom, saved so a restart does not answer twice.
        self.replied = replied if replied is not None else ExpiringMemory(None)
        self.delivered = 0
        self.poll_seconds = 5.0
        # fsync is I/O wait: many in flight let the filesystem share journal
        # commits between them, so deliveries get threads of their own.
        self._io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="maildir-io")
        # Delivered records waiting for their new/ folders' fsync, and the task doing it.
        self._finishing: list[tuple[str, set[Path]]] = []
        self._completer: asyncio.Task[None] | None = None
        self.folder_syncs = 0

    def maildir_path(self, key: str) -> Path:
        po, name = key.split("/", 1)
        return mailbox_dir(self.data_root, po, name)

    async def run(self) -> None:
        try:
            while not self.stopping:
                await self.wait_for_kick(self.poll_seconds)
                await self.drain()
        finally:
            if self._completer is not None:
                await self._completer  # delivered mail is marked done before we go
            self._io.shutdown(wait=False)

    async def drain(self) -> None:
        """Deliver everything due, and return once those records are done."""
        while not self.directory().site.delivery.hold:
            due = self.spool.due(QUEUE, time.time(), WINDOW)
            batch = [r for r in due if self.spool.claim(QUEUE, r)]
            if not batch:
                break
            await asyncio.gather(*(self._one(r) for r in batch))
        if self._completer is not None:
            await asyncio.shield(self._completer)

    async def _one(self, record_id: str) -> None:
        finishing = False
        try:
            finishing = await self.process(record_id)
        except Exception as exc:
            log.exception(
                "delivery failed id=%s record=%s; will retry",
                record_id.rsplit(".", 1)[0],
                record_id,
            )
            env, _ = self.spool.read_record(QUEUE, record_id)
            failed = [
                {
                    "result": "deferred",
                    "host": "local",
                    "reply": f"internal error: {exc}",
                    "rcpts": list(env.rcpts),
                }
            ]
            env = history.add_attempt(env, time.time(), failed)
            await self.spool.update(QUEUE, record_id, _later(env, 60.0))
        finally:
            if not finishing:  # a finishing record stays claimed until it is done
                self.spool.release(QUEUE, record_id)

    async def process(self, record_id: str) -> bool:
        """Deliver one record; True when it is left to finish (its folders to be synced)."""
        try:
            env, msg_id = self.spool.read_record(QUEUE, record_id)
            data = self.spool.read_message(msg_id)
        except Damaged as exc:
            await self.spool.quarantine_record(QUEUE, record_id, exc)
            return False
        if self.spool.possible_duplicate(QUEUE, record_id):
            log.warning(
                "delivery possible-duplicate id=%s record=%s mailboxes=%s "
                "(queued before a crash; it may have been delivered once already)",
                env.trace_id,
                record_id,
                ",".join(env.rcpts),
            )
        directory = self.directory()
        failed: list[dsn.RecipientStatus] = []
        written: set[Path] = set()
        for key in env.rcpts:
            entry = directory.mailboxes.get(key)
            status = await self.deliver_one(env, data, key, entry, directory, written)
            if status is not None:
                failed.append(status)
        if failed:
            await self._bounce(env, data, failed, directory)
        self._finish_later(record_id, written)
        return True

    def _finish_later(self, record_id: str, folders: set[Path]) -> None:
        self._finishing.append((record_id, folders))
        if self._completer is None:
            self._completer = asyncio.get_running_loop().create_task(self._complete())

    async def _complete(self) -> None:
        """Sync the new/ folders of every record delivered in a window, then mark them done.

        Each copy's link is on disk before its record is done: one fsync per
        folder per window, shared by every delivery in it.
        """
        loop = asyncio.get_running_loop()
        try:
            while self._finishing:
                if not self.stopping:
                    await asyncio.sleep(COMPLETE_DELAY)
                batch, self._finishing = self._finishing, []
                folders = set().union(*(f for _, f in batch))
                try:
                    await loop.run_in_executor(self._io, _fsync_folders, folders)
                    self.folder_syncs += len(folders)
                except OSError as exc:
                    # Not known to be on disk: delivered again later (a duplicate at worst).
                    log.error("delivery folder-sync-failed why=%s records=%d", exc, len(batch))
                    for record_id, _ in batch:
                        self.spool.release(QUEUE, record_id)
                    continue
                for record_id, _ in batch:
                    await self.spool.done(QUEUE, record_id)
                    self.spool.release(QUEUE, record_id)
        finally:
            self._completer = None

    async def deliver_one(
        self,
        env: Envelope,
        data: bytes,
        key: str,
        entry: MailboxEntry | None,
        directory: Directory,
        written: set[Path] | None = None,
    ) -> dsn.RecipientStatus | None:
        """Deliver one copy; a RecipientStatus when it must bounce instead.

        The copy's new/ folder is added to `written` for the caller to fsync;
        without `written` it is fsynced here.
        """
        path = self.maildir_path(key)
        original = env.get(f"orig:{key}", key)
        if entry is None and not path.exists():
            log.warning("delivery no-mailbox id=%s mailbox=%s", env.trace_id, key)
            return dsn.RecipientStatus(original, "failed", "5.1.1", "x-mailplat; mailbox removed")
        maildir = Maildir(path)
        size = len(data)
        quota = entry.quota_bytes if entry else None
        if self.quota.would_exceed(maildir, size, quota):
            log.info("delivery over-quota id=%s mailbox=%s size=%d", env.trace_id, key, size)
            return dsn.RecipientStatus(
                original, "failed", "5.2.2", "x-mailplat; mailbox full (quota exceeded)"
            )
        prefix = headers.field("Return-Path", f"<{env.mail_from}>")
        # The address this copy was delivered for: the recipient as sent when it
        # is one of the mailbox's own, else its primary (group, redirect, catchall).
        delivered_to = original
        if entry is not None and original.lower() not in entry.addresses:
            delivered_to = entry.primary
        prefix += headers.field("Delivered-To", delivered_to)
        if env.get(f"catchall:{key}"):
            prefix += headers.field(directory.site.delivery.catchall_header, original)
        if not path.exists():
            await asyncio.to_thread(maildir.create)
        target = maildir
        if env.get("junk"):
            # DMARC quarantine (smtp_in): the Junk folder, quota counted on the mailbox.
            target = await asyncio.to_thread(junk_folder, path)
        loop = asyncio.get_running_loop()
        name = await loop.run_in_executor(
            self._io, functools.partial(target.deliver, prefix + data, sync_dir=written is None)
        )
        if written is not None:
            written.add(target.path / "new")
        self.quota.add(maildir, len(prefix) + size)
        self.delivered += 1
        log.info(
            "delivery ok id=%s mailbox=%s file=%s%s",
            env.trace_id,
            key,
            name,
            " folder=Junk" if target is not maildir else "",
        )
        if entry is not None and target is maildir:
            # Never an autoreply to quarantined mail: its sender is likely forged.
            await self._after_delivery(env, data, entry, directory, path / "new" / name)
        return None

    async def _after_delivery(
        self, env: Envelope, data: bytes, entry: MailboxEntry, directory: Directory, file: Path
    ) -> None:
        bulk = is_bulk(data) or not env.mail_from
        reply = entry.model.autoresponder
        if reply is not None and reply.enabled:
            why = autoreply_refusal(env, data)
            if why is None:
                await self._autoreply(env, data, entry, directory)
            else:
                log.info(
                    "delivery no-autoreply id=%s mailbox=%s from=%s why=%s",
                    env.trace_id,
                    entry.key,
                    env.mail_from or "<>",
                    why,
                )
        event = entry.model.delivery_event
        if event is not None and not bulk:
            asyncio.get_running_loop().create_task(
                run_event(event.program, entry.postoffice, entry.name, file)
            )

    async def _autoreply(
        self, env: Envelope, data: bytes, entry: MailboxEntry, directory: Directory
    ) -> None:
        memory_key = f"{entry.key}|{env.mail_from.lower()}"
        now = time.time()
        if self.replied.allowed(memory_key):
            return
        # Never answer mail we sent ourselves to ourselves.
        if env.mail_from.lower() in entry.addresses:
            return
        self.replied.record(memory_key, AUTOREPLY_MEMORY_MINUTES)
        model = entry.model.autoresponder
        assert model is not None
        message = dsn.autoreply(
            # The mailbox's reply-to address, when set, is the one replies should reach.
            sender=entry.model.reply_to or entry.primary,
            to=env.mail_from,
            subject=model.subject,
            body=model.body,
            in_reply_to=headers.get_header(data, "Message-ID"),
            host=directory.site.server.host_name,
        )
        reply_env = Envelope(
            mail_from="",  # RFC 3834 §3.3: auto-replies go out with a null sender
            rcpts=(env.mail_from,),
            trace_id=new_id(),
            received_at=now,
            meta=(("autoreply-of", env.trace_id),),
        )
        reply_id = await self.inject(reply_env, message)
        log.info(
            "delivery autoreply id=%s parent=%s mailbox=%s to=%s",
            reply_id,
            env.trace_id,
            entry.key,
            env.mail_from,
        )

    async def _bounce(
        self,
        env: Envelope,
        data: bytes,
        statuses: list[dsn.RecipientStatus],
        directory: Directory,
    ) -> None:
        made = dsn.bounce_for(directory, env, data, statuses)
        if made is None:
            log.info("delivery no-bounce id=%s (null sender or no_ndr)", env.trace_id)
            return
        bounce_id = await self.inject(*made)
        log.info("delivery bounce id=%s parent=%s to=%s", bounce_id, env.trace_id, env.mail_from)


def _fsync_folders(folders: set[Path]) -> None:
    for folder in folders:
        fsync_dir(folder)


def _later(env: Envelope, seconds: float) -> Envelope:
    from dataclasses import replace

    return replace(env, attempts=env.attempts + 1, next_try=time.time() + seconds)


async def run_event(program: str, postoffice: str, mailbox: str, file: Path) -> None:
    """Run a delivery event program; its failure is logged, never fatal."""
    try:
        proc = await asyncio.create_subprocess_exec(
            program,
            postoffice,
            mailbox,
            str(file),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        code = await asyncio.wait_for(proc.wait(), 60)
        log.info("delivery event program=%s exit=%d", program, code)
    except (OSError, TimeoutError) as exc:
        log.warning("delivery event-failed program=%s why=%s", program, exc)
