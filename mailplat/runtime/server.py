"""The mail server process: start everything a site declares, stop it gracefully.

Server.start() opens the spool (recovering whatever a crash left), starts the
MTA agent and local delivery, then the listeners (one line logged per bound
address). serve_until(event) runs until the event is set (signals in the
CLI, a plain event in tests). stop() is uvicorn's four steps: stop
accepting, let sessions finish (up to a timeout), cancel the rest, flush.
The Directory is one reference, swapped whole by a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from mailplat.auth.passwords import verify_password
from mailplat.auth.pop_before_smtp import PopBeforeSmtp
from mailplat.config.directory import Directory, MailboxEntry
from mailplat.config.load import SiteConfig
from mailplat.config.models.base import split_host_port
from mailplat.config.models.site import Listener
from mailplat.connectors.postoffice.deliver import LocalDelivery
from mailplat.connectors.smtp_in.listener import ConnectionGate, SmtpListener
from mailplat.core.envelope import Envelope
from mailplat.mta.agent import Agent
from mailplat.runtime.tls import server_context
from mailplat.services.pop3.listener import Pop3Server
from mailplat.services.pop3.session import LoginDisabled, MailboxHandle
from mailplat.spool.queue import Spool
from mailplat.store.maildir import Maildir
from mailplat.store.paths import mailbox_dir
from mailplat.store.quota import QuotaTracker

log = logging.getLogger("mailplat.server")

SMTP_KINDS = ("smtp", "submission", "smtps")
POP_KINDS = ("pop3", "pop3s")


@dataclass(frozen=True)
class Bound:
    """A listener that is up: protocol, host, port."""

    kind: str
    host: str
    port: int


class _Pop3Backend:
    """The POP3 service's view of the server: logins against the current Directory."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def authenticate(self, login: str, password: str, client_ip: str) -> MailboxHandle | None:
        return await self.server.pop3_authenticate(login, password, client_ip)


class Server:
    """One mailplat process serving one site."""

    def __init__(self, config: SiteConfig, data_root: Path) -> None:
        self.config = config
        self.data_root = data_root
        self._directory = Directory(config)
        self.spool = Spool(data_root / "spool")
        self.quota = QuotaTracker()
        self.gate = ConnectionGate()
        self.pop_memory = PopBeforeSmtp(data_root / "state" / "pop_before_smtp.json")
        self.agent = Agent(self.spool, lambda: self._directory, self._wake)
        self.delivery = LocalDelivery(
            self.spool, lambda: self._directory, data_root, self._inject, self.quota
        )
        self.smtp_listeners: list[SmtpListener] = []
        self.pop3: Pop3Server | None = None
        self.pop3_bound: list[Bound] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.started = asyncio.Event()

    # -- the context connectors see ---------------------------------------------

    @property
    def directory(self) -> Directory:
        return self._directory

    def swap(self, config: SiteConfig) -> None:
        """Replace the Directory in one assignment; sessions keep their snapshot."""
        self.config = config
        self._directory = Directory(config)

    async def accept(self, env: Envelope, data: bytes) -> str:
        queue_id = await self.spool.receive(env, data)
        self.agent.kick()
        return queue_id

    async def _inject(self, env: Envelope, data: bytes) -> str:
        return await self.accept(env, data)

    def pop_before_smtp(self, ip: str) -> bool:
        return self.pop_memory.allowed(ip)

    def mailbox_full(self, key: str) -> bool:
        entry = self._directory.mailboxes.get(key)
        if entry is None or entry.quota_bytes is None:
            return False
        maildir = Maildir(self._maildir_path(entry))
        return self.quota.would_exceed(maildir, 1, entry.quota_bytes)

    def record_failure(self, ip: str) -> None:
        log.info("failure peer=%s", ip)

    def _wake(self, queue: str) -> None:
        if queue == "postoffice":
            self.delivery.kick()

    def _maildir_path(self, entry: MailboxEntry) -> Path:
        return mailbox_dir(self.data_root, entry.postoffice, entry.name)

    # -- authentication ----------------------------------------------------------

    def authenticate(self, login: str, password: str) -> str | None:
        """The mailbox key for a good login, else None (SMTP AUTH)."""
        entry = self._directory.mailbox_for_login(login)
        if entry is None or entry.model.logon_disabled or entry.model.disabled:
            verify_password(None, password)
            return None
        return entry.key if verify_password(entry.model.password, password) else None

    async def pop3_authenticate(
        self, login: str, password: str, client_ip: str
    ) -> MailboxHandle | None:
        entry = self._directory.mailbox_for_login(login)
        if entry is None:
            return None
        ok = await asyncio.to_thread(verify_password, entry.model.password, password)
        if not ok:
            return None
        if entry.model.logon_disabled:
            raise LoginDisabled(entry.key)
        maildir = Maildir(self._maildir_path(entry))
        if not maildir.path.exists():
            await asyncio.to_thread(maildir.create)
        return MailboxHandle(key=entry.key, maildir=maildir)

    def pop3_on_login(self, handle: MailboxHandle, client_ip: str) -> None:
        relay = self._directory.site.relay.pop_before_smtp
        if relay.enabled:
            self.pop_memory.record(client_ip, relay.minutes)

    # -- lifecycle -----------------------------------------------------------------

    def _tls(self, listener: Listener) -> ssl.SSLContext | None:
        if listener.tls is None:
            return None
        root = self.config.root
        return server_context(root / listener.tls.cert, root / listener.tls.key)

    def _binds(self, listener: Listener, default_port: int) -> list[tuple[str, int]]:
        out = []
        for bind in listener.bind:
            host, port = split_host_port(bind, default_port)
            assert port is not None
            out.append((host, port))
            if listener.alternate_port:
                out.append((host, listener.alternate_port))
        return out

    async def start(self) -> None:
        report = await asyncio.to_thread(self.spool.open)
        log.info("spool opened %s", report)
        site = self._directory.site
        self.agent.poll_seconds = float(site.delivery.queue_poll_seconds)
        self._tasks.append(asyncio.create_task(self.agent.run(), name="mta"))
        self._tasks.append(asyncio.create_task(self.delivery.run(), name="delivery"))
        defaults = {"smtp": 25, "submission": 587, "smtps": 465, "pop3": 110, "pop3s": 995}
        for kind in SMTP_KINDS:
            listener: Listener = getattr(site.listeners, kind)
            if not listener.enabled:
                continue
            tls = self._tls(listener)
            for host, port in self._binds(listener, defaults[kind]):
                smtp = SmtpListener(
                    kind,
                    host,
                    port,
                    self,
                    self.gate,
                    tls,
                    listener.auth_requires_tls,
                    self.authenticate,
                )
                await smtp.start()
                self.smtp_listeners.append(smtp)
        pop_kinds = [k for k in POP_KINDS if getattr(site.listeners, k).enabled]
        if pop_kinds:
            plain = site.listeners.pop3
            self.pop3 = Pop3Server(
                _Pop3Backend(self),
                host_name=site.server.host_name,
                require_tls_for_auth=plain.auth_requires_tls,
                on_login=self.pop3_on_login,
            )
            for kind in pop_kinds:
                listener = getattr(site.listeners, kind)
                tls = self._tls(listener)
                for host, port in self._binds(listener, defaults[kind]):
                    if kind == "pop3s":
                        bound = await self.pop3.start(host, port, ssl_context=tls)
                    else:
                        bound = await self.pop3.start(host, port, starttls_context=tls)
                    self.pop3_bound.append(Bound(kind, host, bound))
                    log.info("listening protocol=%s address=%s:%d", kind, host, bound)
        self.agent.kick()
        self.delivery.kick()
        self.started.set()

    def bound(self) -> list[Bound]:
        return [Bound(s.kind, s.host, s.port) for s in self.smtp_listeners] + self.pop3_bound

    def port(self, kind: str) -> int:
        """The first bound port of a listener kind (tests bind port 0)."""
        return next(b.port for b in self.bound() if b.kind == kind)

    async def serve_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let sessions finish, cancel what remains."""
        for listener in self.smtp_listeners:
            await listener.stop()
        if self.pop3 is not None:
            await self.pop3.stop()
        deadline = asyncio.get_running_loop().time() + grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gate.idle.wait(), grace)
        # Flush in flow order: the agent routes what the last sessions handed
        # over, then delivery empties its queue. Workers stop between messages,
        # never inside a spool write; only past the deadline are they cancelled,
        # and what is left then stays durable in the spool for the next start.
        workers: list[Agent | LocalDelivery] = [self.agent, self.delivery]
        for task, worker in zip(self._tasks, workers, strict=True):
            worker.request_stop()
            left = max(0.5, deadline - asyncio.get_running_loop().time())
            done, _ = await asyncio.wait({task}, timeout=left)
            if not done:
                log.info("stop: %s did not finish in time; the rest stays queued", task.get_name())
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        self.spool.close()
        log.info("stopped")
