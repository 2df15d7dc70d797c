"""SMTP listeners: bind an address, admit or refuse each connection, run its session.

`SmtpListener` binds one address for one kind (smtp, submission, smtps).
Each accepted connection is an SmtpConnection whose coroutine first does the
TLS handshake on implicit-TLS listeners, then asks the `ConnectionGate`
(access list, auto-bans, connection limits, shared by every SMTP listener of
a server) whether it may stay: a refused client is told why (421) before the
close, on TLS listeners over TLS. Then an SmtpSession runs until it ends.

Guarantees: every refusal is a reply and one log line, under uvloop and
asyncio alike; a failed TLS handshake is one INFO line, never a traceback;
nothing a client does ends the listener. A graceful stop tells idle sessions
421 4.3.2 and lets busy ones finish their transaction.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from dataclasses import dataclass, field

from mailplat.auth.memory import ExpiringMemory
from mailplat.config.directory import Directory
from mailplat.connectors.smtp_in.connection import SmtpConnection, TlsFailed
from mailplat.connectors.smtp_in.handler import InboundContext, InboundHandler
from mailplat.connectors.smtp_in.session import ListenerOptions, SmtpSession
from mailplat.core import replies
from mailplat.core.netmatch import ip_matches
from mailplat.core.tls_listener import TlsFirstServer

log = logging.getLogger("mailplat.smtp")

TLS_HANDSHAKE_TIMEOUT = 15.0


@dataclass
class ConnectionGate:
    """Connection counts and open sessions shared by every SMTP listener of one server.

    smtp.max_connections counts per listener kind: anonymous clients filling
    port 25 must not lock authenticated users out of submission. The per-IP
    limit counts one client's connections to all of them.
    """

    total: int = 0
    per_kind: Counter[str] = field(default_factory=Counter)
    per_ip: Counter[str] = field(default_factory=Counter)
    kinds: dict[SmtpConnection, str] = field(default_factory=dict)
    # Auto-banned IPs; the server passes one saved under <data>/state/bans.json.
    bans: ExpiringMemory = field(default_factory=lambda: ExpiringMemory(None))
    # Set while no session is open; graceful stop waits on it.
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    sessions: set[SmtpConnection] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.idle.set()

    def admit(self, ip: str, directory: Directory, kind: str = "smtp") -> str | None:
        """None to admit, else the reply to send before closing."""
        smtp = directory.site.smtp
        access = smtp.access
        if access.mode == "allow" and not ip_matches(ip, access.addresses):
            return replies.S421_ACCESS_DENIED
        if access.mode == "deny" and ip_matches(ip, access.addresses):
            return replies.S421_ACCESS_DENIED
        if ip in self.bans.until:
            if self.bans.allowed(ip):
                return replies.S421_ACCESS_DENIED
            self.bans.forget(ip)
        if (
            self.per_kind[kind] >= smtp.max_connections
            or self.per_ip[ip] >= smtp.max_connections_per_ip
        ):
            return replies.S421_TOO_MANY_CONNECTIONS
        return None

    def opened(self, ip: str, conn: SmtpConnection, kind: str = "smtp") -> None:
        self.total += 1
        self.per_kind[kind] += 1
        self.kinds[conn] = kind
        self.per_ip[ip] += 1
        self.sessions.add(conn)
        self.idle.clear()

    def closed(self, ip: str, conn: SmtpConnection) -> None:
        if conn not in self.sessions:
            return
        self.sessions.discard(conn)
        self.total -= 1
        self.per_kind[self.kinds.pop(conn, "smtp")] -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]
        if self.total <= 0:
            self.idle.set()

    def ban(self, ip: str, minutes: int) -> None:
        self.bans.record(ip, minutes)

    def stop_idle(self) -> None:
        """Graceful stop: idle sessions say 421 4.3.2 now, busy ones after their reply."""
        for conn in list(self.sessions):
            conn.stopping = True
            conn.wake()


class SmtpListener:
    """One bound SMTP endpoint of one kind."""

    def __init__(
        self,
        kind: str,
        host: str,
        port: int,
        context: InboundContext,
        gate: ConnectionGate,
        tls: ssl.SSLContext | None,
        auth_requires_tls: bool,
    ) -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self.context = context
        self.gate = gate
        self.tls = tls
        self.handler = InboundHandler(context, kind)
        self.server: asyncio.Server | None = None
        self.tls_server: TlsFirstServer | None = None
        self._auth_requires_tls = auth_requires_tls
        self._options = self._make_options(auth_requires_tls)

    def _make_options(self, auth_requires_tls: bool) -> ListenerOptions:
        implicit = self.kind == "smtps"
        return ListenerOptions(
            kind=self.kind,
            starttls=None if implicit else self.tls,
            implicit_tls=implicit,
            auth_requires_tls=auth_requires_tls and not implicit,
        )

    @property
    def options(self) -> ListenerOptions:
        """This listener's options under the config in force now (a reload changes them)."""
        listener = getattr(self.context.directory.site.listeners, self.kind)
        if listener.auth_requires_tls != self._auth_requires_tls:
            self._auth_requires_tls = listener.auth_requires_tls
            self._options = self._make_options(listener.auth_requires_tls)
        return self._options

    @property
    def implicit_tls(self) -> bool:
        return self.kind == "smtps"

    async def _serve(self, conn: SmtpConnection) -> None:
        """The whole life of one connection."""
        ip = conn.peer_ip
        directory = self.context.directory
        refusal = self.gate.admit(ip, directory, self.kind)
        try:
            if refusal is not None:
                # On an implicit-TLS port this goes out over TLS: the handshake is done.
                log.info("smtp refused peer=%s reply=%s", ip, refusal[:3])
                conn.reply(refusal)
                await conn.close()
                return
            self.gate.opened(ip, conn, self.kind)
            session = SmtpSession(conn, self.handler, self.options, directory, on_ban=self.gate.ban)
            await session.run()
        except TlsFailed as exc:
            log.info("smtp tls-failed peer=%s reason=%s", ip, exc.reason)
        except Exception as exc:  # a bug of ours; the client only sees the connection end
            log.exception("smtp internal-error peer=%s: %s", ip, exc)
        finally:
            self.gate.closed(ip, conn)
            conn.abort_if_open()

    async def start(self) -> None:
        if self.implicit_tls:
            assert self.tls is not None
            self.tls_server = TlsFirstServer(
                self.host,
                self.port,
                self.tls,
                lambda: SmtpConnection(self._serve),
                _log_tls_failure,
                handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
            self.port = await self.tls_server.start()
        else:
            loop = asyncio.get_running_loop()
            self.server = await loop.create_server(
                lambda: SmtpConnection(self._serve), self.host, self.port, reuse_address=True
            )
            self.port = self.server.sockets[0].getsockname()[1]
        log.info("listening protocol=%s address=%s:%d", self.kind, self.host, self.port)

    async def stop(self) -> None:
        """Stop accepting; open sessions carry on (a reload must not cut them)."""
        if self.server is not None:
            # Not wait_closed(): from Python 3.12 it waits for every session to end.
            self.server.close()
            self.server = None
        if self.tls_server is not None:
            self.tls_server.close()
            self.tls_server = None


def _log_tls_failure(peer: str, reason: str) -> None:
    log.info("smtp tls-failed peer=%s reason=%s", peer, reason)
