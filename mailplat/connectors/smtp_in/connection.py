"""One SMTP connection's byte stream: buffered reads, batched replies, TLS, timeouts.

An asyncio.Protocol that the session (session.py) drives through a small
API: `read_line`, `read_data`, `reply`, `flush`, `start_tls`, `close`. It
knows bytes and sockets, never SMTP verbs.

Guarantees:
- memory per connection is bounded: reading pauses while the unread buffer
  is over READ_HIGH, a command line is capped (its excess is discarded up to
  the line end, or the connection is dropped past MAX_DISCARD), message data
  beyond the size limit is counted, not kept;
- replies queued while pipelined commands are still buffered go out in one
  write, when the session is about to wait for input (RFC 2920);
- STARTTLS drops every byte received before the handshake (RFC 3207 §4.2,
  the "STARTTLS command injection" class), and a failed handshake is one
  INFO line with the peer and the reason, never a traceback;
- a read that waits longer than its deadline raises Timeout, so the session
  can say 421 before closing; a peer that goes away raises Closed.
Works the same under uvloop and asyncio: only the public transport API is used.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from mailplat.connectors.smtp_in.wire import END_OF_DATA, longest_line, unstuff
from mailplat.core.tls_listener import tls_failure_reason

log = logging.getLogger("mailplat.smtp")

READ_HIGH = 256 * 1024
READ_LOW = 64 * 1024
MAX_DISCARD = 64 * 1024
TLS_HANDSHAKE_TIMEOUT = 15.0


class StreamEvent(Exception):
    """Something about the byte stream, not a command: the session's loop handles it."""


class Closed(StreamEvent):
    """The peer closed the connection (or it broke)."""


class Timeout(StreamEvent):
    """Nothing arrived before the deadline."""


class LineTooLong(StreamEvent):
    """A line passed its limit; its rest was discarded up to the line end."""


class Flood(StreamEvent):
    """MAX_DISCARD bytes without a line end: the connection must be dropped."""


class TlsFailed(StreamEvent):
    """The TLS handshake did not complete; `reason` is for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Data:
    """What DATA received: the message (dots removed) or why it was not kept."""

    message: bytes | None  # None when too big (it was counted, not kept)
    size: int  # octets received between 354 and the final dot
    longest_line: int


class SmtpConnection(asyncio.Protocol):
    """The transport side of one SMTP session; `run` is the session's coroutine."""

    def __init__(self, run: Callable[[SmtpConnection], object]) -> None:
        self._run = run
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self.peer_port = 0
        self.local: tuple[str, int] = ("", 0)
        self.tls = False
        self.task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._eof = False
        self._lost = False
        # Set by a graceful stop: an idle session says 421 and goes.
        self.stopping = False

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: use the API, not isinstance.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer_ip, self.peer_port = str(peer[0]), int(peer[1]) if len(peer) > 1 else 0
        sock = transport.get_extra_info("sockname") or ("", 0)
        self.local = (str(sock[0]), int(sock[1]) if len(sock) > 1 else 0)
        # Implicit TLS (core/tls_listener.py) hands us a transport after its handshake.
        self.tls = transport.get_extra_info("ssl_object") is not None
        coro = self._run(self)
        assert asyncio.iscoroutine(coro)
        self.task = self._loop.create_task(coro)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > READ_HIGH and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # Keep a plain socket half-open so the last replies can still be sent;
        # a TLS transport closes either way (and warns if told otherwise).
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- waiting -------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake(self) -> None:
        """Interrupt a waiting read (used by a graceful stop)."""
        self._wake()

    async def _wait_input(self, deadline: float) -> None:
        if self._lost or self._eof:
            raise Closed
        if self.stopping:
            raise Closed
        await self.flush()
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _consumed(self) -> None:
        if self._read_paused and len(self._buf) < READ_LOW and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    @property
    def idle(self) -> bool:
        """True while waiting for the client's next command."""
        return self._waiter is not None

    def has_input(self) -> bool:
        """True when pipelined bytes are waiting unread."""
        return bool(self._buf)

    # -- reading -------------------------------------------------------------------

    async def read_line(self, limit: int, idle: float) -> bytes:
        """The next line without its CRLF (a bare LF also ends a command line).

        Raises Timeout when nothing completes a line within `idle` seconds.
        """
        deadline = self._loop.time() + idle
        while True:
            end = self._buf.find(b"\n", 0, limit)
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                self._consumed()
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) >= limit:
                del self._buf[:limit]
                await self._discard_line(deadline)
                raise LineTooLong
            if self.stopping and not self._buf:
                raise Closed
            await self._wait_input(deadline)

    async def _discard_line(self, deadline: float) -> None:
        dropped = 0
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                del self._buf[: end + 1]
                self._consumed()
                return
            dropped += len(self._buf)
            self._buf.clear()
            if dropped > MAX_DISCARD:
                raise Flood
            await self._wait_input(deadline)

    async def read_data(self, limit: int, idle: float, overall: float) -> Data:
        """Message data up to <CRLF>.<CRLF>, found with bytes.find, dots removed in one pass.

        Past `limit` octets the data is only counted (memory stays bounded) and
        the result has no message. Bytes after the terminator stay buffered:
        they are the client's next pipelined commands.
        """
        raw = bytearray(b"\r\n")  # the CRLF that precedes the first line
        searched = 0
        dropped = 0
        line_max = 0
        deadline_all = self._loop.time() + overall
        while True:
            if self._buf:
                raw += self._buf
                self._buf.clear()
                self._consumed()
                end = raw.find(END_OF_DATA, max(0, searched - 4))
                if end >= 0:
                    self._buf[:0] = raw[end + 5 :]
                    size = dropped + end  # without the virtual CRLF, with the last line's CRLF
                    if dropped or size > limit:
                        return Data(None, size, line_max)
                    kept = bytes(raw[: end + 2])
                    return Data(unstuff(kept), size, max(line_max, longest_line(kept[2:])))
                searched = len(raw)
                if dropped or len(raw) > limit + 2:
                    # Too big: count, keep only the tail (the terminator may straddle chunks).
                    dropped += len(raw) - 4
                    del raw[:-4]
                    searched = 4
            deadline = min(deadline_all, self._loop.time() + idle)
            await self._wait_input(deadline)

    # -- writing -------------------------------------------------------------------

    def reply(self, text: str) -> None:
        """Queue one reply line; it goes out at the next flush."""
        self._out.append(text.encode("utf-8", "replace") + b"\r\n")

    async def flush(self) -> None:
        """Send every queued reply in one write; wait while the peer is not reading."""
        if self._out and self.transport is not None and not self._lost:
            self.transport.write(b"".join(self._out))
        self._out.clear()
        if self._write_paused and not self._lost:
            self._drain = self._loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None

    async def close(self) -> None:
        """Send what is queued, then close (TLS says close_notify first)."""
        await self.flush()
        if self.transport is not None and not self._lost:
            self.transport.close()

    def abort_if_open(self) -> None:
        """Close a transport the session left open (it ended on an error)."""
        if self.transport is not None and not self._lost and not self.transport.is_closing():
            self.transport.close()

    # -- TLS -----------------------------------------------------------------------

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Upgrade to TLS; raise TlsFailed. Bytes pipelined before now are dropped."""
        await self.flush()
        if self._buf:
            log.warning(
                "smtp starttls-injection peer=%s discarded=%d", self.peer_ip, len(self._buf)
            )
            self._buf.clear()
        assert self.transport is not None
        try:
            transport = await self._loop.start_tls(
                self.transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        except (OSError, TimeoutError, ConnectionError, EOFError) as exc:
            self._lost = True
            raise TlsFailed(tls_failure_reason(exc)) from None
        if transport is None:
            self._lost = True
            raise TlsFailed("connection closed during the handshake")
        self.transport = transport
        self.tls = True
        self._read_paused = False
        self._eof = False


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(Timeout())
