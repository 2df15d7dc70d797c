"""SMTP listeners: a gate that admits connections, and the per-connection session.

`SmtpListener` binds one address for one kind (smtp, submission, smtps). Each
accepted connection first meets `_Gate`, which enforces the access list,
bans and connection limits (421 and close) before any SMTP is spoken, then
hands the transport to a fresh `MailplatSMTP` (aiosmtpd's SMTP with our
banner, failure counting, AUTH throttling and timeout reply). A session reads
its Directory snapshot at MAIL FROM; the listener itself holds no config.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from mailplat.auth.memory import ExpiringMemory
from mailplat.config.directory import Directory
from mailplat.connectors.smtp_in.handler import InboundContext, InboundHandler
from mailplat.core import replies
from mailplat.core.address import Address
from mailplat.core.netmatch import ip_matches

log = logging.getLogger("mailplat.smtp")
W3C_LOG = logging.getLogger("mailplat.w3c")

HARD_SIZE_CAP = 256 * 1024 * 1024  # memory bound when the size limit is not enforced
AUTH_FAILURE_DELAY = 1.0
AUTH_FAILURE_LIMIT = 5


@dataclass
class ConnectionGate:
    """Connection counts shared by every SMTP listener of one server."""

    total: int = 0
    per_ip: Counter[str] = field(default_factory=Counter)
    # Auto-banned IPs; the server passes one saved under <data>/state/bans.json.
    bans: ExpiringMemory = field(default_factory=lambda: ExpiringMemory(None))
    # Set while no session is open; graceful stop waits on it.
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    def admit(self, ip: str, directory: Directory) -> str | None:
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
        if self.total >= smtp.max_connections or self.per_ip[ip] >= smtp.max_connections_per_ip:
            return replies.S421_TOO_MANY_CONNECTIONS
        return None

    def opened(self, ip: str) -> None:
        self.total += 1
        self.per_ip[ip] += 1
        self.idle.clear()

    def closed(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]
        if self.total <= 0:
            self.idle.set()

    def ban(self, ip: str, minutes: int) -> None:
        self.bans.record(ip, minutes)


def _expand_banner(banner: str, directory: Directory) -> str:
    text = banner.replace("%LOCALDOMAIN%", directory.site.server.local_domain)
    text = text.replace("%TIME%", time.strftime("%a, %d %b %Y %H:%M:%S %z"))
    return "".join(ch for ch in text if ch >= " ")


class MailplatSMTP(SMTP):
    """aiosmtpd's SMTP with mailplat's banner, limits and per-connection state."""

    def __init__(
        self,
        handler: InboundHandler,
        *,
        gate: ConnectionGate,
        peer_ip: str,
        directory: Directory,
        implicit_tls: bool,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("auth_required") and not kwargs.get("auth_require_tls", True):
            with warnings.catch_warnings():
                # AUTH without STARTTLS on implicit-TLS listeners is safe; aiosmtpd cannot tell.
                warnings.simplefilter("ignore", UserWarning)
                super().__init__(handler, **kwargs)
        else:
            # catch_warnings is not free; most connections never need it.
            super().__init__(handler, **kwargs)
        self.gate = gate
        self.peer_ip = peer_ip
        self.implicit_tls = implicit_tls
        self.snapshot: Directory | None = None
        self.banner_directory = directory
        self.sender: Address | None = None
        self.null_sender = False
        self.login_key: str | None = None
        self.failures = 0
        self.auth_failures = 0
        # PTR/DNSBL verdict for this client: None not checked yet, "" passed, else the reply.
        self.client_verdict: str | None = None
        self._greeted = False
        # W3C log: which command the next reply answers ("-" for the banner).
        self._w3c = W3C_LOG.isEnabledFor(logging.INFO)
        self._command = ("-", "-")
        if self._w3c:
            self._smtp_methods = {
                name: self._traced(name, method) for name, method in self._smtp_methods.items()
            }
        self._closing = False

    # -- connection lifecycle -------------------------------------------------

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            if not self._closing:
                self._closing = True
                self.gate.closed(self.peer_ip)

    def _timeout_cb(self) -> None:
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.write(replies.S421_TIMEOUT.encode() + b"\r\n")
        log.info("smtp timeout peer=%s", self.peer_ip)
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _traced(self, name: str, method: Callable[[str | None], Any]) -> Callable[..., Any]:
        async def call(arg: str | None) -> Any:
            # AUTH arguments carry credentials: never written to a log.
            shown = "-" if name == "AUTH" or not arg else arg
            self._command = (name, shown)
            return await method(arg)

        return call

    def _w3c_line(self, status: str | bytes) -> None:
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
        if text[3:4] == "-":
            return  # a multi-line reply is logged once, at its last line
        local = self.transport.get_extra_info("sockname") if self.transport else None
        host, port = (local[0], local[1]) if local else ("-", 0)
        command, arg = self._command
        query = "".join(c if c.isprintable() and c != " " else "+" for c in arg[:200])
        W3C_LOG.info("%s %s %s %s %s %s", self.peer_ip, host, port, command, query, text[:3])

    async def push(self, status: str | bytes | None) -> None:
        if status is None:
            return
        if self._w3c:
            self._w3c_line(status)
        if not self._greeted:
            self._greeted = True
            banner = self.banner_directory.site.smtp.banner
            if banner:
                status = f"220 {_expand_banner(banner, self.banner_directory)}"
        if isinstance(status, bytes):
            await super().push(status)
        else:
            await super().push(status)

    # -- state helpers used by the handler ------------------------------------

    def is_tls(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    async def check_auth_needed(self, caller_method: str) -> bool:
        # Say what to do first: on a listener where AUTH needs TLS, that is STARTTLS.
        session = self.session
        if (
            self._auth_required
            and session is not None
            and not session.authenticated
            and not self.may_auth_now()
        ):
            await self.push(replies.S530_STARTTLS_FIRST)
            return True
        return bool(await super().check_auth_needed(caller_method))

    # Not named auth_*: aiosmtpd offers every auth_* method as a SASL mechanism.
    def may_auth_now(self) -> bool:
        return self.is_tls() or not self._auth_require_tls

    def protocol_name(self) -> str:
        """RFC 3848 protocol type for the Received header."""
        name = "ESMTP" if self.session and self.session.extended_smtp else "SMTP"
        if self.is_tls():
            name += "S"
        if self.login_key:
            name += "A"
        return name

    async def fail(self, reply: str) -> str | None:
        """Count a failed command; past the limit, reply, say 421 and close."""
        self.failures += 1
        directory = self.snapshot or self.banner_directory
        security = directory.site.security
        if self.failures < security.max_failures:
            return reply
        await self.push(reply)
        await self.push(replies.S421_TOO_MANY_ERRORS)
        log.warning("smtp too-many-failures peer=%s count=%d", self.peer_ip, self.failures)
        if security.auto_ban.enabled and not ip_matches(self.peer_ip, security.ip_whitelist):
            self.gate.ban(self.peer_ip, security.auto_ban.minutes)
            log.warning("smtp auto-ban peer=%s minutes=%d", self.peer_ip, security.auto_ban.minutes)
        if self.transport is not None:
            self.transport.close()
        return None

    async def smtp_AUTH(self, arg: str) -> None:
        was = bool(self.session and self.session.authenticated)
        await super().smtp_AUTH(arg)
        if self.session is None or was or self.session.authenticated:
            return
        if self.session.host_name and arg and self.may_auth_now():
            self.auth_failures += 1
            log.info("smtp auth-failed peer=%s count=%d", self.peer_ip, self.auth_failures)
            # Slow down guessing, then hang up after a few tries (chasquid's rule).
            await asyncio.sleep(AUTH_FAILURE_DELAY)
            if self.auth_failures >= AUTH_FAILURE_LIMIT and self.transport is not None:
                await self.push(replies.S421_TOO_MANY_ERRORS)
                self.transport.close()

    async def smtp_EXPN(self, arg: str) -> None:
        await self.push(replies.S502_NOT_IMPLEMENTED)

    async def smtp_RSET(self, arg: str) -> None:
        self.snapshot = None
        self.sender = None
        await super().smtp_RSET(arg)


class _Gate(asyncio.Protocol):
    """Admits or refuses a connection, then hands the transport to an SMTP session."""

    def __init__(self, listener: SmtpListener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername") or ("", 0)
        ip = str(peer[0])
        directory = self.listener.context.directory
        refusal = self.listener.gate.admit(ip, directory)
        if refusal is not None:
            log.info("smtp refused peer=%s reply=%r", ip, refusal)
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal.encode() + b"\r\n")
            transport.close()
            return
        self.listener.gate.opened(ip)
        session = self.listener.new_session(ip, directory)
        transport.set_protocol(session)
        session.connection_made(transport)


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
        authenticate: Callable[[str, str], str | None],
    ) -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self.context = context
        self.gate = gate
        self.tls = tls
        self.auth_requires_tls = auth_requires_tls
        self.authenticate = authenticate
        self.handler = InboundHandler(context, kind)
        self.server: asyncio.Server | None = None

    @property
    def implicit_tls(self) -> bool:
        return self.kind == "smtps"

    def _authenticator(
        self, server: MailplatSMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        key = self.authenticate(login, password)
        if key is None:
            return AuthResult(success=False, handled=False)
        server.login_key = key
        log.info("smtp auth-ok peer=%s login=%s", server.peer_ip, key)
        return AuthResult(success=True, auth_data=auth_data)

    def new_session(self, ip: str, directory: Directory) -> MailplatSMTP:
        smtp = directory.site.smtp
        limit = smtp.max_message_size_kb * 1024 if smtp.enforce_max_message_size else 0
        return MailplatSMTP(
            self.handler,
            gate=self.gate,
            peer_ip=ip,
            directory=directory,
            implicit_tls=self.implicit_tls,
            data_size_limit=limit or HARD_SIZE_CAP,
            enable_SMTPUTF8=True,
            hostname=directory.site.server.host_name,
            ident="ESMTP mailplat",
            tls_context=None if self.implicit_tls else self.tls,
            timeout=smtp.idle_timeout_seconds,
            auth_required=self.kind in ("submission", "smtps"),
            auth_require_tls=self.auth_requires_tls and not self.implicit_tls,
            authenticator=self._authenticator,
            command_call_limit={"RCPT": max(smtp.max_recipients + 10, 100), "*": 100},
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Gate(self),
            self.host,
            self.port,
            ssl=self.tls if self.implicit_tls else None,
            reuse_address=True,
        )
        sock = self.server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("listening protocol=%s address=%s:%d", self.kind, self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
