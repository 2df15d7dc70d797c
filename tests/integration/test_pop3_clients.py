"""Python's poplib against the real Pop3Server and real Maildirs.

poplib is blocking, so each client runs in a worker thread while the server
runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import poplib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailplat.services.pop3.listener import Pop3Server
from mailplat.store.maildir import Maildir, to_lf, to_wire
from tests.integration.pop3_support import DictBackend, TlsPair, mailbox, make_tls, running

# mailplat serve runs on uvloop: the listener is proven on both loops.
pytestmark = pytest.mark.both_loops

T = TypeVar("T")

DOTS = (
    b"Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.starts with a dot\r\n"
    b"middle . dot\r\n. space\r\nlast line\r\n"
)
PLAIN = (
    b"From: a@x.test\r\nTo: alice@x.test\r\nSubject: hello\r\n\r\nbody 1\r\nbody 2\r\nbody 3\r\n"
)
LF_ONLY = b"Subject: lf\n\nstored as LF\nno final newline"


def wire(message: bytes) -> bytes:
    return to_wire(to_lf(message))


async def run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def alice(root: Path) -> Maildir:
    return mailbox(root, "alice", PLAIN, DOTS, LF_ONLY)


@pytest.fixture
def backend(alice: Maildir) -> DictBackend:
    return DictBackend({"alice": ("secret", alice)})


@pytest.fixture
def tls(tmp_path: Path) -> TlsPair:
    return make_tls(tmp_path / "tls")


@pytest.fixture
async def server(backend: DictBackend) -> AsyncIterator[Pop3Server]:
    async with running(backend) as srv:
        yield srv


def session(port: int) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", port, timeout=5)
    client.user("alice")
    client.pass_("secret")
    return client


def body(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


async def test_retrieve_every_message_exactly(server: Pop3Server) -> None:
    def talk() -> list[tuple[int, bytes, int]]:
        client = session(server.port)
        count, _ = client.stat()
        _, listing, _ = client.list()
        sizes = [int(item.split()[1]) for item in listing]
        out = []
        for n in range(1, count + 1):
            _, lines, octets = client.retr(n)
            out.append((sizes[n - 1], body(lines), octets))
        client.quit()
        return out

    got = await run(talk)
    assert [b for _, b, _ in got] == [wire(PLAIN), wire(DOTS), wire(LF_ONLY)]
    for listed, data, octets in got:
        # LIST's count is exactly what RETR delivered (RFC 1939 §5).
        assert listed == len(data) == octets


async def test_dot_stuffed_lines_round_trip(server: Pop3Server) -> None:
    def talk() -> bytes:
        client = session(server.port)
        _, lines, _ = client.retr(2)
        client.quit()
        return body(lines)

    assert await run(talk) == DOTS


async def test_top(server: Pop3Server) -> None:
    def talk() -> tuple[bytes, bytes]:
        client = session(server.port)
        _, none, _ = client.top(1, 0)
        _, two, _ = client.top(1, 2)
        client.quit()
        return body(none), body(two)

    none, two = await run(talk)
    head = b"From: a@x.test\r\nTo: alice@x.test\r\nSubject: hello\r\n\r\n"
    assert none == head
    assert two == head + b"body 1\r\nbody 2\r\n"


async def test_capa(server: Pop3Server) -> None:
    def talk() -> dict[str, list[str]]:
        client = poplib.POP3("127.0.0.1", server.port, timeout=5)
        caps = client.capa()
        client.quit()
        return caps

    caps = await run(talk)
    for cap in ("TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"):
        assert cap in caps
    assert caps["SASL"] == ["PLAIN"]
    assert caps["IMPLEMENTATION"] == ["mailplat"]


async def test_uidl_stable_across_restart_and_new_to_cur(
    backend: DictBackend, alice: Maildir
) -> None:
    def uidl_and_read(port: int) -> list[bytes]:
        client = session(port)
        _, listing, _ = client.uidl()
        client.retr(1)  # moves message 1 to cur/ at QUIT
        client.quit()
        return listing

    async with running(backend) as first:
        before = await run(lambda: uidl_and_read(first.port))
    assert any(p.name.endswith(":2,S") for p in (alice.path / "cur").iterdir())
    # A new server with new Maildir objects, as after a process restart.
    fresh = DictBackend({"alice": ("secret", Maildir(alice.path))})
    async with running(fresh) as second:
        after = await run(lambda: uidl_and_read(second.port))
    assert before == after
    assert len(before) == 3
    for item in before:
        uid = item.split()[1]
        assert 1 <= len(uid) <= 70 and all(0x21 <= c <= 0x7E for c in uid)


async def test_deletions_only_at_quit(server: Pop3Server, alice: Maildir) -> None:
    def delete_then_drop() -> None:
        client = session(server.port)
        client.dele(1)
        client.dele(3)
        client.close()  # connection dropped without QUIT

    await run(delete_then_drop)
    await asyncio.wait_for(server.drained(), 5)
    assert len(Maildir(alice.path).messages()) == 3

    def delete_then_rset_quit() -> None:
        client = session(server.port)
        client.dele(1)
        client.rset()
        client.quit()

    await run(delete_then_rset_quit)
    assert len(Maildir(alice.path).messages()) == 3

    def delete_then_quit() -> bytes:
        client = session(server.port)
        client.dele(1)
        client.dele(3)
        return client.quit()

    reply = await run(delete_then_quit)
    assert reply.startswith(b"+OK")
    left = Maildir(alice.path).messages()
    assert len(left) == 1
    assert to_wire(Maildir(alice.path).read(left[0].uid)) == wire(DOTS)


async def test_second_session_gets_in_use(server: Pop3Server) -> None:
    def talk() -> bytes:
        first = session(server.port)
        second = poplib.POP3("127.0.0.1", server.port, timeout=5)
        second.user("alice")
        try:
            second.pass_("secret")
        except poplib.error_proto as exc:
            reply = exc.args[0]
        else:
            reply = b"no error"
        second.quit()
        first.quit()
        return bytes(reply)

    assert (await run(talk)).startswith(b"-ERR [IN-USE]")


async def test_auth_plain_raw_commands(server: Pop3Server) -> None:
    token = base64.b64encode(b"\0alice\0secret").decode()

    def initial_response() -> bytes:
        # poplib has no AUTH; its private helpers send raw lines (typeshed omits them).
        client: Any = poplib.POP3("127.0.0.1", server.port, timeout=5)
        reply: bytes = client._shortcmd(f"AUTH PLAIN {token}")
        stat = client.stat()
        client.quit()
        return reply + f" {stat}".encode()

    assert (await run(initial_response)).startswith(b"+OK Logged in")

    def continuation() -> tuple[bytes, bytes]:
        client: Any = poplib.POP3("127.0.0.1", server.port, timeout=5)
        client._putcmd("AUTH PLAIN")
        challenge: bytes = client._getline()[0]
        reply: bytes = client._shortcmd(token)
        client.quit()
        return challenge, reply

    challenge, reply = await run(continuation)
    assert challenge == b"+ "
    assert reply.startswith(b"+OK Logged in")


async def test_pop3_ssl(backend: DictBackend, tls: TlsPair) -> None:
    async with running(backend, tls=tls, implicit=True, require_tls_for_auth=True) as server:

        def talk() -> bytes:
            client = poplib.POP3_SSL("127.0.0.1", server.port, context=tls.client, timeout=5)
            client.user("alice")
            client.pass_("secret")
            _, lines, _ = client.retr(2)
            client.quit()
            return body(lines)

        assert await run(talk) == DOTS


async def test_stls_then_login(backend: DictBackend, tls: TlsPair) -> None:
    async with running(backend, tls=tls, require_tls_for_auth=True) as server:

        def plaintext_user() -> bytes:
            client = poplib.POP3("127.0.0.1", server.port, timeout=5)
            try:
                client.user("alice")
            except poplib.error_proto as exc:
                return bytes(exc.args[0])
            finally:
                client.close()
            return b"accepted"

        assert (await run(plaintext_user)).startswith(b"-ERR [AUTH]")
        assert backend.calls == []

        def upgraded() -> tuple[int, int]:
            client = poplib.POP3("127.0.0.1", server.port, timeout=5)
            client.stls(context=tls.client)
            client.user("alice")
            client.pass_("secret")
            stat = client.stat()
            client.quit()
            return stat

        assert (await run(upgraded))[0] == 3
