"""Loopback SMTP receivers (aiosmtpd) that play remote mail servers for outbound tests.

A Receiver listens on one 127.0.0.x address and a port, in the test's own
event loop, and follows a Script: accept everything, or answer MAIL, some
RCPTs or the end of DATA with a given reply, drop the connection at a chosen
step, stall (never answer) at a chosen step, advertise a small SIZE, require
AUTH (after STARTTLS when it has a certificate). Everything it accepted is
kept, with the raw bytes, so tests assert what exactly we emitted.

Several Receivers on 127.0.0.2, 127.0.0.3, ... share one port, which is how
a test models several MX hosts while the site's delivery.remote_port points
at that port.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass
class Got:
    """One message a receiver accepted."""

    mail_from: str
    rcpts: list[str]
    data: bytes  # as received after dot-unstuffing, CRLF line endings
    mail_options: list[str]
    tls: bool
    login: str | None
    helo: str
    peer: str  # the client's IP (our bind address)


@dataclass
class Script:
    """How a receiver answers. Replies are full lines such as "451 4.3.0 Try later"."""

    greeting_reply: str | None = None  # e.g. "554 5.3.2 go away" instead of 220
    mail_reply: str | None = None
    rcpt_reply: Callable[[str], str | None] | None = None  # None means accept
    data_reply: str | None = None
    drop_at: str | None = None  # "mail" | "rcpt" | "data"
    stall_at: str | None = None  # "mail" | "data"
    size: int = 0  # advertised SIZE (0: aiosmtpd's default)
    users: dict[str, str] | None = None  # AUTH required with these logins
    tls: ssl.SSLContext | None = None  # offer STARTTLS with this certificate


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, receiver: Receiver) -> None:
        self.r = receiver

    async def _maybe_break(self, server: SMTP, step: str) -> bool:
        script = self.r.script
        if script.stall_at == step:
            self.r.stalled.set()
            await self.r.released.wait()
            return True
        if script.drop_at == step:
            server.transport.abort()
            return True
        return False

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.r.connections_used.add(id(server))
        if await self._maybe_break(server, "mail"):
            return "421 4.3.0 gone"
        if self.r.script.mail_reply:
            return self.r.script.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if await self._maybe_break(server, "rcpt"):
            return "421 4.3.0 gone"
        script = self.r.script
        reply = script.rcpt_reply(address) if script.rcpt_reply else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if await self._maybe_break(server, "data"):
            return "421 4.3.0 gone"
        if self.r.script.data_reply:
            return self.r.script.data_reply
        login = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode()
        self.r.got.append(
            Got(
                mail_from=envelope.mail_from,
                rcpts=list(envelope.rcpt_tos),
                data=envelope.original_content,
                mail_options=list(envelope.mail_options),
                tls=session.ssl is not None,
                login=login,
                helo=session.host_name or "",
                peer=str(session.peer[0]) if session.peer else "",
            )
        )
        self.r.arrived.set()
        return "250 2.0.0 Queued"


class _GreetingRefuser(asyncio.Protocol):
    def __init__(self, reply: str) -> None:
        self.reply = reply

    def connection_made(self, transport: Any) -> None:
        transport.write(self.reply.encode() + b"\r\n")
        transport.close()


class Receiver:
    """One scripted SMTP server on host:port (call start() inside the test's loop)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, script: Script | None = None):
        self.host = host
        self.port = port
        self.script = script or Script()
        self.got: list[Got] = []
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()  # set at stop(): stalled sessions end
        self.stalled = asyncio.Event()  # a session reached its stall point
        self.connections = 0
        self.connections_used: set[int] = set()
        self._server: asyncio.Server | None = None
        self._sessions: list[SMTP] = []

    def _auth(self, server: Any, session: Any, envelope: Any, mech: str, data: Any) -> AuthResult:
        users = self.script.users or {}
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            if users.get(login) == password:
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    def _factory(self) -> asyncio.Protocol:
        self.connections += 1
        script = self.script
        if script.greeting_reply:
            return _GreetingRefuser(script.greeting_reply)
        kwargs: dict[str, Any] = {}
        if script.size:
            kwargs["data_size_limit"] = script.size
        smtp = SMTP(
            _Handler(self),
            hostname=f"rx-{self.host}",
            tls_context=script.tls,
            auth_required=bool(script.users),
            auth_require_tls=script.tls is not None,
            authenticator=self._auth if script.users else None,
            enable_SMTPUTF8=True,
            **kwargs,
        )
        self._sessions.append(smtp)
        return smtp

    async def start(self) -> Receiver:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._factory, self.host, self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.close()
            for smtp in self._sessions:
                if smtp.transport is not None:
                    smtp.transport.close()
            await self._server.wait_closed()
            self._server = None

    async def wait(self, count: int = 1, timeout: float = 10.0) -> list[Got]:
        """Until `count` messages arrived (an event, not a sleep loop per message)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while len(self.got) < count:
            self.arrived.clear()
            left = end - loop.time()
            if left <= 0:
                raise AssertionError(f"{self.host}: {len(self.got)} of {count} messages arrived")
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                continue
        return self.got
