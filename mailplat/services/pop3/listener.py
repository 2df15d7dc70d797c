"""POP3 over asyncio streams: accept, read, answer, upgrade to TLS, stop.

Input: a Pop3Backend plus options; `start()` once per address, plain
(optionally offering STLS) or implicit TLS (pop3s, port 995). Output: running
listeners whose bound ports are exposed (tests bind port 0).

Guarantees:
- STLS (RFC 2595 §4) purges plaintext: the TLS layer gets a brand-new
  StreamReader, so every byte received before the handshake (the STARTTLS
  command-injection class, "NO STARTTLS" 2021) is dropped with the old one,
  and the session restarts from AUTHORIZATION.
- No traceback reaches a client: an unexpected error becomes
  `-ERR [SYS/TEMP]`, a log line on "mailplat.pop3", and a clean close.
- The idle timer closes a silent connection after saying so (-ERR), without
  deleting anything (RFC 1939 §3).
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
import logging
import ssl
from dataclasses import dataclass, field

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
)

log = logging.getLogger("mailplat.pop3")

READ_CHUNK = 4096
TLS_HANDSHAKE_TIMEOUT = 30.0
CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class _Endpoint:
    implicit_tls: bool
    starttls_context: ssl.SSLContext | None


class _TlsFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _log_tls_failure(peer: str, reason: str) -> None:
    log.info("pop3 tls-failed peer=%s reason=%s", peer, reason)


@dataclass(eq=False, slots=True)
class _Connection:
    task: asyncio.Task[None]
    idle: bool = False


@dataclass(slots=True)
class _Streams:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    extra: list[asyncio.StreamWriter] = field(default_factory=list)


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

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # A stop cancels idle sessions; ending quietly keeps asyncio's stream
            # callback (which inspects the task) from logging the cancellation.
            with contextlib.suppress(asyncio.CancelledError):
                await self._serve(reader, writer, endpoint)

        if ssl_context is not None:
            # The handshake completes before the session starts; a failed one is
            # one log line (core/tls_listener.py says why not start_server(ssl=)).
            tls_server = TlsFirstServer(
                host,
                port,
                ssl_context,
                lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(), on_connect),
                _log_tls_failure,
                handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
            bound = await tls_server.start()
            self._tls_servers[bound] = tls_server
        else:
            server = await asyncio.start_server(on_connect, host, port)
            self._servers.append(server)
            bound = int(server.sockets[0].getsockname()[1])
        self.ports.append(bound)
        log.info("pop3 listening address=%s:%d tls=%s", host, bound, endpoint.implicit_tls)
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
            if conn.idle:
                conn.task.cancel()
        tasks = [c.task for c in self._connections]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.stop_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # -- one connection ----------------------------------------------------------------

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: _Endpoint
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Connection(task)
        self._connections.add(conn)
        self._no_connections.clear()
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else ""
        session = Pop3Session(
            self.context,
            client_ip=client_ip,
            tls=endpoint.implicit_tls,
            starttls_available=endpoint.starttls_context is not None,
        )
        streams = _Streams(reader, writer)
        try:
            await self._converse(conn, streams, session, endpoint)
        except _TlsFailed as exc:
            log.info("pop3 tls-failed peer=%s reason=%s", client_ip, exc.reason)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("pop3 connection-lost peer=%s why=%s", client_ip, exc)
        except Exception:
            log.exception("pop3 internal-error peer=%s", client_ip)
            with contextlib.suppress(Exception):
                streams.writer.write(reply(r.POP_SYS_TEMP))
                await asyncio.wait_for(streams.writer.drain(), CLOSE_TIMEOUT)
        finally:
            try:
                await self._close(streams)
            finally:
                self._connections.discard(conn)
                if not self._connections:
                    self._no_connections.set()

    async def _converse(
        self,
        conn: _Connection,
        streams: _Streams,
        session: Pop3Session,
        endpoint: _Endpoint,
    ) -> None:
        options = self.context.options
        lines = LineReader()
        try:
            streams.writer.write(session.greeting())
            await streams.writer.drain()
            while True:
                lines.limit = session.line_limit
                event = lines.next_event()
                if event is None:
                    if self._stopping:
                        return
                    conn.idle = True
                    try:
                        async with asyncio.timeout(options.idle_timeout):
                            data = await streams.reader.read(READ_CHUNK)
                    except TimeoutError:
                        # RFC 1939 §3: the autologout timer; nothing is deleted (no UPDATE).
                        log.info("pop3 idle-timeout peer=%s", session.client_ip)
                        streams.writer.write(reply(r.POP_IDLE_TIMEOUT))
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(streams.writer.drain(), CLOSE_TIMEOUT)
                        return
                    finally:
                        conn.idle = False
                    if not data:
                        return
                    lines.feed(data)
                    continue
                response = await session.handle_event(event)
                streams.writer.write(response.data)
                await streams.writer.drain()
                if response.action is Action.CLOSE:
                    return
                if response.action is Action.STARTTLS:
                    assert endpoint.starttls_context is not None
                    if lines.pending():
                        log.warning(
                            "pop3 stls-injection peer=%s discarded=%d",
                            session.client_ip,
                            lines.pending(),
                        )
                    await self._upgrade(streams, endpoint.starttls_context)
                    # Fresh framing and a fresh session: nothing from before survives.
                    lines = LineReader()
                    session.close()
                    session = session.after_tls()
        finally:
            session.close()

    async def _upgrade(self, streams: _Streams, context: ssl.SSLContext) -> None:
        """Start TLS on a new reader, dropping whatever plaintext the old one holds.

        StreamWriter.start_tls (3.11) keeps the old StreamReader and its buffer,
        which may hold pipelined plaintext; purging it would need the private
        `_buffer`. loop.start_tls with a fresh StreamReaderProtocol is the same
        machinery with nothing carried over.
        """
        loop = asyncio.get_running_loop()
        old = streams.writer
        await old.drain()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport = await loop.start_tls(
                old.transport,
                protocol,
                context,
                server_side=True,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        except (OSError, TimeoutError, EOFError) as exc:
            raise _TlsFailed(tls_failure_reason(exc)) from None
        if transport is None:
            raise _TlsFailed("connection closed during the handshake")
        # loop.start_tls does not call connection_made on the new protocol.
        protocol.connection_made(transport)
        streams.extra.append(old)
        streams.reader = reader
        streams.writer = asyncio.StreamWriter(transport, protocol, reader, loop)

    @staticmethod
    async def _close(streams: _Streams) -> None:
        writer = streams.writer
        with contextlib.suppress(Exception):
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
