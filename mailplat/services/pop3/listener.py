"""POP3 over asyncio protocols: accept, frame, answer, upgrade to TLS, stop.

Input: a Pop3Backend plus options; `start()` once per address, plain
(optionally offering STLS) or implicit TLS (pop3s, port 995). Output: running
listeners whose bound ports are exposed (tests bind port 0).

One `_Connection` protocol per client. Bytes are framed where they arrive
(`data_received`) and a command the session can answer at once (STAT, LIST,
UIDL, DELE, RETR of a small message...) is answered there, with no task and
no stream wakeup in between; a command that has to wait (a login, the update
at QUIT, a big message read in a thread) runs in a task, and nothing else is
answered until it is done, so answers keep the order of the commands.

Guarantees:
- STLS (RFC 2595 §4) purges plaintext: bytes pipelined behind STLS, or sent
  before the handshake, are dropped (and logged), the TLS layer gets fresh
  framing, and the session restarts from AUTHORIZATION.
- No traceback reaches a client: an unexpected error becomes
  `-ERR [SYS/TEMP]`, a log line on "mailplat.pop3", and a clean close.
- The idle timer closes a silent connection after saying so (-ERR), without
  deleting anything (RFC 1939 §3). A client that stops reading our answers
  times out the same way.
- Bounded memory per connection: reading pauses while more than
  MAX_BUFFERED bytes wait behind a busy command or a full send buffer.
- TLS (pop3s from the first byte, or after STLS) is started by us on the
  accepted socket, so a failed handshake is one INFO line with the peer and
  the reason, never a traceback or silence.
- `stop()` follows the four steps: stop accepting, close idle sessions,
  give busy ones `stop_grace` seconds to finish (a QUIT mid-UPDATE
  completes), cancel the rest. A mailbox lock is always released.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from mailplat.core import replies as r
from mailplat.core.tls_listener import TlsFirstServer, tls_failure_reason
from mailplat.services.pop3.protocol import LineReader, reply
from mailplat.services.pop3.session import (
    Action,
    OnLogin,
    Pop3Backend,
    Pop3Context,
    Pop3Options,
    Pop3Session,
    Response,
)

log = logging.getLogger("mailplat.pop3")

TLS_HANDSHAKE_TIMEOUT = 30.0
# How long a closing connection may take to flush its last answer before it is cut.
CLOSE_TIMEOUT = 2.0
# Received bytes held while a command is busy; past this, reading pauses.
MAX_BUFFERED = 64 * 1024


@dataclass(frozen=True, slots=True)
class _Endpoint:
    implicit_tls: bool
    starttls_context: ssl.SSLContext | None


def _log_tls_failure(peer: str, reason: str) -> None:
    log.info("pop3 tls-failed peer=%s reason=%s", peer, reason)


class _Connection(asyncio.Protocol):
    """One client connection, from accept (or its TLS handshake) to close."""

    def __init__(self, server: Pop3Server, endpoint: _Endpoint) -> None:
        self.server = server
        self.endpoint = endpoint
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.session: Pop3Session | None = None
        self.lines = LineReader()
        self.client_ip = ""
        self.tls = endpoint.implicit_tls
        self.task: asyncio.Task[None] | None = None  # the command that is waiting on I/O
        self.last = 0.0  # loop time of the last sign of life from the client
        self.timer: asyncio.TimerHandle | None = None
        self.unsent = 0  # send buffer size at the last idle check
        self.upgrading = False  # STLS said yes: plaintext from here on is an injection
        self.write_paused = False
        self.read_paused = False
        self.eof = False
        self.closing = False
        self.lost = False
        self.finished = False

    # -- asyncio callbacks (never raise: an exception here would be asyncio's traceback)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio classes, but have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        try:
            self._greet()
        except Exception:
            log.exception("pop3 internal-error peer=%s", self.client_ip)
            self.transport.abort()

    def _greet(self) -> None:
        transport = self._transport()
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else ""
        self.session = Pop3Session(
            self.server.context,
            client_ip=self.client_ip,
            tls=self.tls,
            starttls_available=self.endpoint.starttls_context is not None,
        )
        refusal = self.server._admit(self.client_ip)
        if refusal is not None:
            # A refusal is a reply: the client is told before the close.
            log.info("pop3 refused peer=%s why=%s", self.client_ip, refusal)
            transport.write(reply(r.POP_TOO_MANY_CONNECTIONS))
            self.closing = True
            transport.close()
            return
        self.server._opened(self)
        if self.server._stopping:
            self.close()
            return
        transport.write(self.session.greeting())
        self.last = self.loop.time()
        self.timer = self.loop.call_later(
            self.server.context.options.idle_timeout, self._idle_check
        )

    def data_received(self, data: bytes) -> None:
        if self.upgrading or self.closing:
            if self.upgrading:
                log.warning("pop3 stls-injection peer=%s discarded=%d", self.client_ip, len(data))
            return
        self.lines.feed(data)
        self.last = self.loop.time()
        if self.task is None and not self.write_paused:
            self._pump()
        elif self.lines.pending() > MAX_BUFFERED and not self.read_paused:
            self.read_paused = True
            self._transport().pause_reading()

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.task is None and not self.write_paused and not self.closing:
            self._pump()  # answers what is left, then closes
        # Over TCP, stay open to finish a command in progress; TLS cannot half-close.
        return None if self.tls else True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        if exc is not None:
            log.info("pop3 connection-lost peer=%s why=%s", self.client_ip, exc)
        if self.task is None:
            self._finish()
        # else the command completes (a QUIT's update is not cut short) and finishes us

    def pause_writing(self) -> None:
        self.write_paused = True
        self.unsent = self._transport().get_write_buffer_size()  # progress is measured from here

    def resume_writing(self) -> None:
        self.write_paused = False
        self.last = self.loop.time()  # the client is reading what we send
        if self.task is None and not self.closing:
            self._pump()

    # -- answering -------------------------------------------------------------------

    def _transport(self) -> asyncio.Transport:
        assert self.transport is not None
        return self.transport

    def _pump(self) -> None:
        """Answer the buffered commands until one has to wait, the buffer is empty or we close."""
        session = self.session
        assert session is not None
        try:
            while self.task is None and not self.write_paused and not self.closing:
                self.lines.limit = session.line_limit
                event = self.lines.next_event()
                if event is None:
                    if self.eof or self.server._stopping:
                        self.close()
                    elif self.read_paused:
                        self.read_paused = False
                        self._transport().resume_reading()
                    return
                answer = session.answer(event)
                if isinstance(answer, Response):
                    self._respond(answer)
                else:
                    self.task = self.loop.create_task(self._complete(answer))
        except Exception:
            self._internal_error()

    def _respond(self, response: Response) -> None:
        self._transport().write(response.data)
        if response.action is Action.CLOSE:
            self.close()
        elif response.action is Action.STARTTLS:
            self._start_tls()

    async def _complete(self, pending: Awaitable[Response]) -> None:
        """Await a command that had to wait, answer it, then carry on with the buffer."""
        me = asyncio.current_task()
        try:
            try:
                response = await pending
            finally:
                self.task = None
            self.last = self.loop.time()
            if not self.lost:
                self._respond(response)
                self._pump()
        except Exception:
            self._internal_error()
        finally:
            # The client may have left while we worked: nobody to answer, but the
            # command (a QUIT's update) ran to its end; now release the session.
            if self.lost and self.task in (None, me):
                self._finish()

    def _internal_error(self) -> None:
        log.exception("pop3 internal-error peer=%s", self.client_ip)
        if not self.closing and self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.write(reply(r.POP_SYS_TEMP))
        self.close()

    def _idle_check(self) -> None:
        self.timer = None
        if self.closing or self.lost:
            return
        timeout = self.server.context.options.idle_timeout
        if self.write_paused:
            unsent, self.unsent = self.unsent, self._transport().get_write_buffer_size()
            if self.unsent < unsent:
                self.last = self.loop.time()  # a long answer is still going out
        idle = self.loop.time() - self.last
        if self.task is not None or idle < timeout:
            # Busy on our side, or heard from recently: look again when it could expire.
            wait = timeout if self.task is not None else timeout - idle
            self.timer = self.loop.call_later(wait, self._idle_check)
            return
        # RFC 1939 §3: the autologout timer; nothing is deleted (no UPDATE).
        log.info("pop3 idle-timeout peer=%s", self.client_ip)
        with contextlib.suppress(Exception):
            self._transport().write(reply(r.POP_IDLE_TIMEOUT))
        self.close()

    # -- STLS ------------------------------------------------------------------------

    def _start_tls(self) -> None:
        if self.lines.pending():
            log.warning(
                "pop3 stls-injection peer=%s discarded=%d", self.client_ip, self.lines.pending()
            )
        self.lines = LineReader()
        self.upgrading = True
        self.tls = True  # committed: an end of stream from here on comes through TLS
        # Nothing more in plaintext: the ClientHello waits in the socket for start_tls.
        self._transport().pause_reading()
        self.task = self.loop.create_task(self._upgrade())

    async def _upgrade(self) -> None:
        """Start TLS on the socket with a fresh protocol side and a fresh session."""
        context = self.endpoint.starttls_context
        assert context is not None and self.session is not None
        self.session.close()
        try:
            transport = await self.loop.start_tls(
                self._transport(),
                _TlsSide(self),
                context,
                server_side=True,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        except BaseException as exc:
            # start_tls closed the socket; the TLS side was never connected, so no
            # connection_lost will come: finish here.
            if isinstance(exc, OSError | TimeoutError | EOFError):
                _log_tls_failure(self.client_ip, tls_failure_reason(exc))
            self.task = None
            self.closing = True
            self._finish()
            if isinstance(exc, OSError | TimeoutError | EOFError):
                return
            raise
        self.task = None
        if transport is None:
            self.closing = True
            self._finish()
            return
        self.transport = transport
        self.upgrading = False
        self.session = self.session.after_tls()
        self.last = self.loop.time()
        if self.lost:
            self._finish()
        elif self.lines.pending():
            self._pump()  # the client spoke first under TLS

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Flush what is written and close; a client that does not read is cut after a while."""
        if self.closing or self.transport is None:
            self.closing = True
            return
        self.closing = True
        transport = self.transport
        transport.close()
        self.loop.call_later(CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        if not self.lost and self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        """Release everything of this connection (once), after the last command is done."""
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.session is not None:
            self.session.close()
        self.server._closed(self)


class _TlsSide(asyncio.Protocol):
    """The protocol on top of TLS after STLS: hands everything to its connection.

    A separate object, so that nothing the plaintext transport still delivers
    can be taken for a command sent under TLS.
    """

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        if not self.conn.upgrading:
            self.conn.data_received(data)
        else:
            # Decrypted bytes can arrive before start_tls returns: keep them.
            self.conn.lines.feed(data)
            self.conn.last = self.conn.loop.time()

    def eof_received(self) -> bool | None:
        return self.conn.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()


class Pop3Server:
    """All POP3 listeners of one mail server; they share one mailbox lock registry."""

    def __init__(
        self,
        backend: Pop3Backend,
        *,
        host_name: str = "localhost",
        require_tls_for_auth: bool = False,
        failed_login_delay: float = 1.0,
        idle_timeout: float = 600.0,
        on_login: OnLogin | None = None,
        max_bad_commands: int = 10,
        max_auth_failures: int = 3,
        stop_grace: float = 2.0,
        max_connections: int = 200,
        max_connections_per_ip: int = 20,
    ) -> None:
        options = Pop3Options(
            host_name=host_name,
            require_tls_for_auth=require_tls_for_auth,
            failed_login_delay=failed_login_delay,
            idle_timeout=idle_timeout,
            max_bad_commands=max_bad_commands,
            max_auth_failures=max_auth_failures,
        )
        self.context = Pop3Context(backend=backend, options=options, on_login=on_login)
        self.stop_grace = stop_grace
        self.ports: list[int] = []
        self._servers: list[asyncio.Server] = []
        self._tls_servers: dict[int, TlsFirstServer] = {}
        self._connections: set[_Connection] = set()
        self._per_ip: dict[str, int] = {}
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self._stopping = False
        self._no_connections = asyncio.Event()
        self._no_connections.set()

    @property
    def port(self) -> int:
        """The first bound port."""
        return self.ports[0]

    @property
    def active(self) -> int:
        """Open connections."""
        return len(self._connections)

    async def drained(self) -> None:
        """Return once no connection is open (every mailbox lock released)."""
        await self._no_connections.wait()

    def configure(
        self,
        *,
        require_tls_for_auth: bool,
        failed_login_delay: float,
        idle_timeout: float,
        max_connections: int,
        max_connections_per_ip: int,
    ) -> None:
        """Take a reloaded config's settings: the next command and connection use them."""
        self.context.options = dataclasses.replace(
            self.context.options,
            require_tls_for_auth=require_tls_for_auth,
            failed_login_delay=failed_login_delay,
            idle_timeout=idle_timeout,
        )
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip

    def _admit(self, ip: str) -> str | None:
        """None to admit a new connection, else why not (connection limits)."""
        if len(self._connections) >= self.max_connections:
            return "too many connections"
        if self._per_ip.get(ip, 0) >= self.max_connections_per_ip:
            return "too many connections from this client"
        return None

    def _opened(self, conn: _Connection) -> None:
        self._connections.add(conn)
        self._per_ip[conn.client_ip] = self._per_ip.get(conn.client_ip, 0) + 1
        self._no_connections.clear()

    def _closed(self, conn: _Connection) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        left = self._per_ip.get(conn.client_ip, 1) - 1
        if left > 0:
            self._per_ip[conn.client_ip] = left
        else:
            self._per_ip.pop(conn.client_ip, None)
        if not self._connections:
            self._no_connections.set()

    async def start(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        starttls_context: ssl.SSLContext | None = None,
    ) -> int:
        """Listen on host:port; return the bound port.

        `ssl_context` makes it implicit TLS (pop3s); `starttls_context` offers STLS.
        """
        endpoint = _Endpoint(
            implicit_tls=ssl_context is not None,
            starttls_context=None if ssl_context is not None else starttls_context,
        )
        if (
            self.context.options.require_tls_for_auth
            and ssl_context is None
            and starttls_context is None
        ):
            log.warning("pop3 listener %s:%d requires TLS for login but offers no STLS", host, port)

        def factory() -> _Connection:
            return _Connection(self, endpoint)

        if ssl_context is not None:
            # The handshake completes before the session starts; a failed one is
            # one log line (core/tls_listener.py says why not create_server(ssl=)).
            tls_server = TlsFirstServer(
                host,
                port,
                ssl_context,
                factory,
                _log_tls_failure,
                handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
            bound = await tls_server.start()
            self._tls_servers[bound] = tls_server
        else:
            server = await asyncio.get_running_loop().create_server(factory, host, port)
            self._servers.append(server)
            bound = int(server.sockets[0].getsockname()[1])
        self.ports.append(bound)
        log.debug("pop3 bound address=%s:%d tls=%s", host, bound, endpoint.implicit_tls)
        return bound

    async def stop_listening(self, port: int) -> None:
        """Stop accepting on one bound port; sessions that came in through it carry on."""
        tls_server = self._tls_servers.pop(port, None)
        if tls_server is not None:
            tls_server.close()
            if port in self.ports:
                self.ports.remove(port)
            log.info("pop3 stopped listening port=%d", port)
        for server in list(self._servers):
            if any(sock.getsockname()[1] == port for sock in server.sockets):
                server.close()
                self._servers.remove(server)
                if port in self.ports:
                    self.ports.remove(port)
                log.info("pop3 stopped listening port=%d", port)

    async def stop(self) -> None:
        """Stop accepting, let busy sessions finish briefly, close everything."""
        self._stopping = True
        for server in self._servers:
            server.close()
        for tls_server in self._tls_servers.values():
            tls_server.close()
        self._tls_servers.clear()
        for conn in list(self._connections):
            if conn.task is None:
                conn.close()  # idle: nothing is in progress, nothing is deleted
        busy = [c.task for c in self._connections if c.task is not None]
        if busy:
            _, pending = await asyncio.wait(busy, timeout=self.stop_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*busy, return_exceptions=True)
        for conn in list(self._connections):
            conn.close()  # closing: no further command starts
        late = [c.task for c in self._connections if c.task is not None]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        # Each close flushes, or aborts after CLOSE_TIMEOUT; then its connection_lost comes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_connections.wait(), CLOSE_TIMEOUT + 1.0)
        for conn in list(self._connections):
            conn._finish()  # a transport that never reported its end: release its lock anyway
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
