"""How the POP3 service reads a Maildir, over a real socket: what it opens, when, and where.

- Login lists the mailbox without opening a message file: sizes come from the
  names (`,W=`); another program's mail without them is measured when STAT or
  LIST asks, exactly (the octets RETR sends before dot-stuffing), and once.
- A small RETR is read on the event loop, a big one in a worker thread: with
  the loop's only worker thread held, the small one still answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import poplib
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mailplat.services.pop3.session import INLINE_READ_MAX
from mailplat.store.maildir import Maildir, to_lf, to_wire
from tests.integration.pop3_support import DictBackend, RawClient, mailbox, running

# mailplat serve runs on uvloop: the listener is proven on both loops.
pytestmark = pytest.mark.both_loops

OURS = b"From: a@x.test\r\nSubject: ours\r\n\r\nHello\r\n"
# Files another program wrote straight into the Maildir, as they are on disk.
FOREIGN = {
    # Dovecot's or a migration tool's name with S= only, CRLF content (the bench's files)
    "1700000001.M1P7.other,S=40": b"Subject: crlf\r\n\r\n.dot first\r\nlast\r\n",
    # plain LF file, no final newline, no size in the name
    "1700000002.M2P7.other": b"Subject: lf\n\n..two dots\nno end",
    # bare CRs and a mix of line ends
    "1700000003.M3P7.other": b"Subject: mixed\r\rline\r\n\nend\r",
}


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    await RawClient.close_all()


def _foreign(md: Maildir) -> None:
    for name, raw in FOREIGN.items():
        (md.path / "cur" / f"{name}:2,").write_bytes(raw)


@contextlib.contextmanager
def _fifo(path: Path) -> Iterator[None]:
    """A FIFO where a message file would be: any open() of it for reading blocks."""
    os.mkfifo(path)
    try:
        yield
    finally:
        # Release a reader stuck in open() (the old code), so no thread hangs the run.
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


async def _login(port: int) -> tuple[RawClient, bytes]:
    c = await RawClient.connect(port)
    await c.line()
    await c.cmd("USER alice")
    return c, await c.cmd("PASS secret")


async def test_login_opens_no_message_file(tmp_path: Path) -> None:
    alice = mailbox(tmp_path, "alice", OURS)
    with _fifo(alice.path / "cur" / "1700000009.M9P9.other:2,"):
        async with running(DictBackend({"alice": ("secret", alice)})) as server:
            c, reply = await _login(server.port)
            # A size the name does not carry is not guessed and not read for the greeting.
            assert reply == b"+OK Logged in, 2 messages\r\n"
            # Delivery order from the names: the foreign one (2023) before ours.
            assert await c.cmd("UIDL 1") == b"+OK 1 1700000009.M9P9.other\r\n"
            assert (await c.cmd("RETR 2")).startswith(b"+OK")
            assert await c.multiline() == to_wire(to_lf(OURS)) + b".\r\n"
            assert await c.cmd("QUIT") == b"+OK Bye, 2 messages left\r\n"


async def test_foreign_sizes_are_exact_and_measured_once(tmp_path: Path) -> None:
    alice = mailbox(tmp_path, "alice", OURS)
    _foreign(alice)
    # Listed in delivery order from the names: the foreign ones (2023) first.
    wanted = [to_wire(raw) for raw in FOREIGN.values()] + [to_wire(to_lf(OURS))]
    expected = [len(w) for w in wanted]

    def talk() -> tuple[tuple[int, int], list[bytes], list[tuple[bytes, int]]]:
        client = poplib.POP3("127.0.0.1", server.port, timeout=5)
        client.user("alice")
        client.pass_("secret")
        stat = client.stat()
        listing = client.list()[1]
        # poplib counts the octets it received per line, CRLF included, after un-stuffing.
        got = []
        for i in (1, 2, 3, 4):
            _, lines, octets = client.retr(i)
            got.append((b"".join(x + b"\r\n" for x in lines), octets))
        client.quit()
        return stat, listing, got

    async with running(DictBackend({"alice": ("secret", alice)})) as server:
        stat, listing, got = await asyncio.to_thread(talk)
        assert stat == (4, sum(expected))
        assert listing == [f"{i} {size}".encode() for i, size in enumerate(expected, 1)]
        assert got == [(w, len(w)) for w in wanted]
        # The next session knows the sizes without reading: they are in its greeting.
        c, reply = await _login(server.port)
        assert reply == f"+OK Logged in, 4 messages ({sum(expected)} octets)\r\n".encode()


class _WatchedPool(ThreadPoolExecutor):
    """One worker thread; says when the server hands it work (submit runs on the loop)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.handed = asyncio.Event()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.handed.set()
        return super().submit(fn, *args, **kwargs)


async def test_small_retr_on_the_loop_big_one_in_a_thread(tmp_path: Path) -> None:
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (INLINE_READ_MAX // 1000 + 8)
    alice = mailbox(tmp_path, "alice", OURS, big)
    loop = asyncio.get_running_loop()
    pool = _WatchedPool()
    loop.set_default_executor(pool)
    gate = threading.Event()
    async with running(DictBackend({"alice": ("secret", alice)})) as server:
        c, reply = await _login(server.port)  # the listing uses the worker thread, then frees it
        assert reply.startswith(b"+OK Logged in, 2 messages")
        held = loop.run_in_executor(None, gate.wait)  # the one worker thread is now busy
        try:
            pool.handed.clear()
            # Answered while no thread is free: read on the loop.
            assert (await c.cmd("RETR 1")).startswith(b"+OK")
            assert await c.multiline() == to_wire(to_lf(OURS)) + b".\r\n"
            assert not pool.handed.is_set()
            await c.send(b"RETR 2\r\n")
            await asyncio.wait_for(pool.handed.wait(), 5)  # the big one asks for a thread
        finally:
            gate.set()
        await held
        assert (await c.line()).startswith(b"+OK")
        assert await c.multiline() == to_wire(to_lf(big)) + b".\r\n"
        assert await c.cmd("QUIT") == b"+OK Bye, 2 messages left\r\n"
    pool.shutdown()
