"""POP3 connection handling over a real socket: pipelining, back-pressure, half-close, idling.

The listener answers in its protocol callbacks and pauses itself when the
client does not keep up; these prove the answers still come complete and in
order, that a client which stops reading is dropped after the idle timeout
(so it cannot hold a mailbox lock forever), and that one reading slowly is not.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailplat.store.maildir import Maildir, to_lf, to_wire
from tests.integration.pop3_support import DictBackend, RawClient, mailbox, running

pytestmark = pytest.mark.both_loops

SMALL = b"Subject: small\r\n\r\n" + b"s" * 4000 + b"\r\n"
# Far bigger than what the kernel buffers between the two sockets (a few MB on loopback).
BIG = b"Subject: big\r\n\r\n" + (b"b" * 1022 + b"\r\n") * 16 * 1024


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    await RawClient.close_all()


@pytest.fixture
def alice(tmp_path: Path) -> Maildir:
    return mailbox(tmp_path, "alice", SMALL, BIG, b"Subject: three\r\n\r\n3\r\n")


@pytest.fixture
def backend(alice: Maildir) -> DictBackend:
    return DictBackend({"alice": ("secret", alice)})


async def _small_window_client(port: int, window: int = 4096) -> RawClient:
    """A client with a fixed, small receive buffer, so that the server's answers back up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    client = RawClient(reader, writer, trickle=False)
    await client.line()
    return client


async def _login(c: RawClient) -> None:
    await c.send(b"USER alice\r\nPASS secret\r\n")
    assert await c.line() == b"+OK Send your password\r\n"
    assert (await c.line()).startswith(b"+OK Logged in, 3 messages")


async def test_pipelined_answers_come_complete_and_in_order_under_backpressure(
    backend: DictBackend,
) -> None:
    async with running(backend) as server:
        c = await _small_window_client(server.port)
        await _login(c)
        # 2,000 answers of 4 KB pile up while the client is not reading.
        count = 2000
        numbers = [3 if i % 3 == 2 else 1 for i in range(count)]
        await c.send(b"".join(b"RETR %d\r\n" % n for n in numbers) + b"NOOP\r\n")
        small, three = to_wire(to_lf(SMALL)), b"Subject: three\r\n\r\n3\r\n"
        for n in numbers:
            status = await c.line()
            body = await c.multiline()
            expected = three if n == 3 else small
            assert (status, body) == (
                f"+OK {len(expected)} octets\r\n".encode(),
                expected + b".\r\n",
            )
        assert await c.line() == b"+OK\r\n"
        assert await c.cmd("QUIT") == b"+OK Bye, 3 messages left\r\n"


async def test_client_that_stops_reading_is_dropped_after_the_idle_timeout(
    backend: DictBackend, alice: Maildir
) -> None:
    async with running(backend, idle_timeout=0.2) as server:
        c = await _small_window_client(server.port)
        await _login(c)
        assert await c.cmd("DELE 3") == b"+OK Message 3 deleted\r\n"
        await c.send(b"RETR 2\r\n")  # 16 MB, and the client never reads it
        # The connection is dropped (lock released) while the client still has not read.
        await asyncio.wait_for(server.drained(), 10)
        assert len(Maildir(alice.path).messages()) == 3  # no UPDATE without QUIT


async def test_slow_reader_of_a_big_message_is_not_timed_out(backend: DictBackend) -> None:
    async with running(backend, idle_timeout=2.0) as server:
        c = await _small_window_client(server.port, window=256 * 1024)
        await _login(c)
        await c.send(b"RETR 2\r\n")
        expected = b"+OK %d octets\r\n" % len(to_wire(to_lf(BIG))) + to_wire(to_lf(BIG)) + b".\r\n"
        parts: list[bytes] = []
        got = 0
        while got < len(expected):
            # A slow link (at most 5 MB/s): each pause is far under the idle timeout,
            # the whole transfer well over it.
            await asyncio.sleep(0.05)
            parts.append(await asyncio.wait_for(c.reader.read(256 * 1024), 5))
            got += len(parts[-1])
        assert b"".join(parts) == expected
        assert await c.cmd("QUIT") == b"+OK Bye, 3 messages left\r\n"


async def test_quit_then_half_close_still_updates(backend: DictBackend, alice: Maildir) -> None:
    async with running(backend) as server:
        c = await RawClient.connect(server.port)
        await c.line()
        await _login(c)
        # The client says all it has to say, then shuts its sending side.
        c.writer.write(b"DELE 1\r\nQUIT\r\n")
        c.writer.write_eof()
        assert await c.line() == b"+OK Message 1 deleted\r\n"
        assert await c.line() == b"+OK Bye, 2 messages left\r\n"
        assert await c.eof()
        await asyncio.wait_for(server.drained(), 5)
    assert len(Maildir(alice.path).messages()) == 2


async def test_pop3_connection_limits_refuse_with_err(tmp_path: Path) -> None:
    """A connection flood gets -ERR before the close, per client and in all (both loops)."""
    from mailplat.core import replies as r
    from tests.support import running as running_server
    from tests.support import write_site

    site = write_site(tmp_path, site={"pop3": {"max_connections": 3, "max_connections_per_ip": 2}})
    async with running_server(site, tmp_path / "data") as srv:
        port = srv.port("pop3")

        async def greeting(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
            return reader, writer, await asyncio.wait_for(reader.readline(), 5)

        held = [await greeting("127.0.0.2") for _ in range(2)]
        assert all(g.startswith(b"+OK") for _, _, g in held)
        _, w3, third = await greeting("127.0.0.2")  # the same client, one too many
        assert third.decode().strip() == r.POP_TOO_MANY_CONNECTIONS
        other = await greeting("127.0.0.3")
        assert other[2].startswith(b"+OK")
        _, w5, full = await greeting("127.0.0.4")  # the server is full
        assert full.decode().strip() == r.POP_TOO_MANY_CONNECTIONS
        for _, w, _ in [*held, other]:
            w.close()
        w3.close()
        w5.close()
