"""A listening socket whose connections speak TLS from the first byte (SMTPS, POP3S, IMAPS).

Input: host, port, an SSL context and a protocol factory. Each accepted socket
is handed to `loop.connect_accepted_socket(..., ssl=...)`, so the protocol's
connection_made runs only once the handshake is done, and a handshake that
fails or times out raises here, where it becomes one call of `on_failure`
(one log line with the peer and the reason) instead of asyncio's silence or
a traceback.

Why not `create_server(ssl=...)`: it reports failed handshakes nowhere (they
are logged at debug level only), and why not accept plain and `start_tls`
later: under uvloop the first bytes of the ClientHello can reach the plain
protocol before start_tls takes the socket over.

Pending handshakes are bounded, in all (MAX_PENDING) and per client IP
(MAX_PENDING_PER_IP, so one client cannot hold every slot and lock everyone
else out); past either a new connection is closed at once, and said in the
log (at most once per client per LOG_EVERY seconds, so a flood cannot flood
the log too).
Works the same under asyncio and uvloop (public loop API only).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from collections.abc import Callable

MAX_PENDING = 256
MAX_PENDING_PER_IP = 8
LOG_EVERY = 10.0


def tls_failure_reason(exc: BaseException) -> str:
    """A short, log-safe reason for a failed handshake."""
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.__class__.__name__)
    if isinstance(exc, TimeoutError) or "taking longer" in str(exc):
        return "handshake timeout"
    return exc.__class__.__name__


class TlsFirstServer:
    """Accepts connections and completes their TLS handshake before the protocol sees them."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        factory: Callable[[], asyncio.Protocol],
        on_failure: Callable[[str, str], None],
        *,
        handshake_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.context = context
        self.factory = factory
        self.on_failure = on_failure
        self.handshake_timeout = handshake_timeout
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._per_ip: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    async def start(self) -> int:
        """Bind and start accepting; the bound port (0 asks the system for a free one)."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(512)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self._accepting = loop.create_task(self._accept_loop(sock))
        return self.port

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError:
                # EMFILE and friends: back off a moment rather than spin.
                await asyncio.sleep(0.1)
                continue
            peer = str(addr[0])
            if len(self._pending) >= MAX_PENDING or self._per_ip.get(peer, 0) >= MAX_PENDING_PER_IP:
                conn.close()
                self._refused(peer, loop.time())
                continue
            self._per_ip[peer] = self._per_ip.get(peer, 0) + 1
            task = loop.create_task(self._handshake(conn, peer))
            self._pending.add(task)
            task.add_done_callback(functools.partial(self._done, peer=peer))

    def _done(self, task: asyncio.Task[None], *, peer: str) -> None:
        self._pending.discard(task)
        left = self._per_ip.get(peer, 1) - 1
        if left > 0:
            self._per_ip[peer] = left
        else:
            self._per_ip.pop(peer, None)

    def _refused(self, peer: str, now: float) -> None:
        if now - self._logged.get(peer, -LOG_EVERY) >= LOG_EVERY:
            if len(self._logged) > 10_000:
                self._logged.clear()
            self._logged[peer] = now
            self.on_failure(peer, "too many TLS handshakes in progress (connection closed)")

    async def _handshake(self, conn: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                self.factory,
                conn,
                ssl=self.context,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except (OSError, TimeoutError, EOFError) as exc:
            conn.close()
            self.on_failure(peer, tls_failure_reason(exc))

    def close(self) -> None:
        """Stop accepting and drop handshakes in progress; established sessions carry on."""
        if self._accepting is not None:
            self._accepting.cancel()
            self._accepting = None
        for task in list(self._pending):
            task.cancel()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
