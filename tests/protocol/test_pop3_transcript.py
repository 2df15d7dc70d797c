"""POP3 transcripts over a real loopback socket, byte-exact against the reply constants.

Each conversation runs twice: every command in one write, and byte by byte
(trickle), because framing bugs show in only one of the two.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailplat.core import replies as r
from mailplat.services.pop3.listener import Pop3Server
from mailplat.services.pop3.protocol import MAX_DISCARD
from mailplat.store.maildir import Maildir, to_lf, to_wire
from tests.integration.pop3_support import (
    DictBackend,
    RawClient,
    TlsPair,
    mailbox,
    make_tls,
    running,
)

# mailplat serve runs on uvloop: the listener is proven on both loops.
pytestmark = pytest.mark.both_loops

M1 = b"From: a@x.test\r\nSubject: one\r\n\r\nHello\r\nSecond line\r\n"
M2 = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
M3 = b"Subject: three\n\nLF input without a final newline"
MESSAGES = (M1, M2, M3)


def wire(message: bytes) -> bytes:
    return to_wire(to_lf(message))


SIZES = [len(wire(m)) for m in MESSAGES]
TOTAL = sum(SIZES)


def line(text: str) -> bytes:
    return text.encode() + b"\r\n"


def plain(login: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{login}\0{password}".encode()).decode()


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    await RawClient.close_all()


@pytest.fixture(params=[False, True], ids=["one-write", "trickle"])
def trickle(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def alice(tmp_path: Path) -> Maildir:
    return mailbox(tmp_path, "alice", *MESSAGES)


@pytest.fixture
def backend(tmp_path: Path, alice: Maildir) -> DictBackend:
    bob = mailbox(tmp_path, "bob")
    return DictBackend(
        {"alice": ("secret", alice), "bob": ("bob pw", bob), "carol": ("c", bob)},
        disabled={"carol"},
    )


@pytest.fixture
def tls(tmp_path: Path) -> TlsPair:
    return make_tls(tmp_path / "tls")


@pytest.fixture
async def server(backend: DictBackend) -> AsyncIterator[Pop3Server]:
    async with running(backend) as srv:
        yield srv


async def connect(server: Pop3Server, trickle: bool = False) -> RawClient:
    client = await RawClient.connect(server.port, trickle)
    assert await client.line() == b"+OK pop.example.test POP3 server ready\r\n"
    return client


async def login(client: RawClient, user: str = "alice", password: str = "secret") -> bytes:
    assert await client.cmd(f"USER {user}") == b"+OK Send your password\r\n"
    return await client.cmd(f"PASS {password}")


# -- every command ------------------------------------------------------------------------


async def test_full_session_every_command(
    server: Pop3Server, alice: Maildir, trickle: bool
) -> None:
    uids = [m.uid for m in alice.messages()]
    c = await connect(server, trickle)
    assert await c.cmd("CAPA") == b"+OK Capability list follows\r\n"
    assert await c.multiline() == (
        b"TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
        b"USER\r\nSASL PLAIN\r\nIMPLEMENTATION mailplat\r\n.\r\n"
    )
    assert await login(c) == line(f"+OK Logged in, 3 messages ({TOTAL} octets)")
    assert await c.cmd("STAT") == line(f"+OK 3 {TOTAL}")
    assert await c.cmd("LIST") == line(f"+OK 3 messages ({TOTAL} octets)")
    assert (
        await c.multiline()
        == line(f"1 {SIZES[0]}") + line(f"2 {SIZES[1]}") + line(f"3 {SIZES[2]}") + b".\r\n"
    )
    assert await c.cmd("LIST 2") == line(f"+OK 2 {SIZES[1]}")
    assert await c.cmd("LIST 4") == line(r.POP_NO_SUCH_MESSAGE)
    assert await c.cmd("UIDL") == b"+OK Unique-ID listing follows\r\n"
    assert await c.multiline() == b"".join(line(f"{i} {u}") for i, u in enumerate(uids, 1)) + (
        b".\r\n"
    )
    assert await c.cmd("UIDL 3") == line(f"+OK 3 {uids[2]}")
    # RETR: CRLF, dot-stuffed, and the octet count equals the unstuffed bytes.
    assert await c.cmd("RETR 2") == line(f"+OK {SIZES[1]} octets")
    body = await c.multiline()
    assert body == b"Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n.\r\n"
    assert len(wire(M2)) == SIZES[1] == len(M2)
    assert await c.cmd("RETR 3") == line(f"+OK {SIZES[2]} octets")
    assert await c.multiline() == (
        b"Subject: three\r\n\r\nLF input without a final newline\r\n.\r\n"
    )
    assert await c.cmd("TOP 1 0") == b"+OK Top of message follows\r\n"
    assert await c.multiline() == b"From: a@x.test\r\nSubject: one\r\n\r\n.\r\n"
    assert await c.cmd("TOP 1 1") == b"+OK Top of message follows\r\n"
    assert await c.multiline() == b"From: a@x.test\r\nSubject: one\r\n\r\nHello\r\n.\r\n"
    assert await c.cmd("DELE 1") == b"+OK Message 1 deleted\r\n"
    assert await c.cmd("DELE 1") == line(r.POP_MESSAGE_DELETED)
    assert await c.cmd("RETR 1") == line(r.POP_MESSAGE_DELETED)
    assert await c.cmd("LIST 1") == line(r.POP_MESSAGE_DELETED)
    assert await c.cmd("STAT") == line(f"+OK 2 {SIZES[1] + SIZES[2]}")
    assert await c.cmd("RSET") == line(f"+OK Maildrop has 3 messages ({TOTAL} octets)")
    assert await c.cmd("DELE 3") == b"+OK Message 3 deleted\r\n"
    assert await c.cmd("LIST") == line(f"+OK 2 messages ({SIZES[0] + SIZES[1]} octets)")
    assert await c.multiline() == line(f"1 {SIZES[0]}") + line(f"2 {SIZES[1]}") + b".\r\n"
    assert await c.cmd("NOOP") == b"+OK\r\n"
    assert await c.cmd("QUIT") == b"+OK Bye, 2 messages left\r\n"
    assert await c.eof()
    await server.drained()
    remaining = Maildir(alice.path).messages()
    assert [m.uid for m in remaining] == uids[:2]
    # Retrieved and kept: moved to cur/ as Seen, uid unchanged.
    assert remaining[1].path.name == f"{uids[1]}:2,S"


async def test_quit_in_authorization_touches_nothing(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    assert await c.cmd("QUIT") == line(r.POP_BYE)
    assert await c.eof()


async def test_pipelined_commands_in_one_write(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    await c.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST 1\r\nQUIT\r\n")
    assert await c.line() == b"+OK Send your password\r\n"
    assert (await c.line()).startswith(b"+OK Logged in")
    assert await c.line() == line(f"+OK 3 {TOTAL}")
    assert await c.line() == line(f"+OK 1 {SIZES[0]}")
    assert await c.line() == b"+OK Bye, 3 messages left\r\n"
    assert await c.eof()


# -- errors and bad sequences -------------------------------------------------------------


async def test_errors_in_authorization_state(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    assert await c.cmd("STAT") == line(r.POP_BAD_SEQUENCE)
    assert await c.cmd("RETR 1") == line(r.POP_BAD_SEQUENCE)
    assert await c.cmd("NOOP") == line(r.POP_BAD_SEQUENCE)
    assert await c.cmd("PASS secret") == line(r.POP_BAD_SEQUENCE)
    assert await c.cmd("XYZZY") == line(r.POP_BAD_COMMAND)
    assert await c.cmd("APOP alice 0123") == line(r.POP_BAD_COMMAND)
    assert await c.cmd("") == line(r.POP_BAD_COMMAND)
    assert await c.cmd("USER") == line(r.POP_SYNTAX)
    assert await c.cmd("STLS") == line(r.POP_TLS_UNAVAILABLE)
    # Still usable after all of that.
    assert (await login(c)).startswith(b"+OK Logged in")


async def test_errors_in_transaction_state(backend: DictBackend, trickle: bool) -> None:
    async with running(backend, max_bad_commands=100) as server:
        await _transaction_errors(server, trickle)


async def _transaction_errors(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    assert (await login(c)).startswith(b"+OK Logged in")
    assert await c.cmd("USER alice") == line(r.POP_BAD_SEQUENCE)
    assert await c.cmd("PASS x") == line(r.POP_BAD_SEQUENCE)
    assert await c.cmd("AUTH PLAIN") == line(r.POP_BAD_SEQUENCE)
    assert await c.cmd("STLS") == line(r.POP_BAD_SEQUENCE)
    assert await c.cmd("RETR") == line(r.POP_SYNTAX)
    assert await c.cmd("RETR x") == line(r.POP_SYNTAX)
    assert await c.cmd("RETR -1") == line(r.POP_SYNTAX)
    assert await c.cmd("RETR 0") == line(r.POP_NO_SUCH_MESSAGE)
    assert await c.cmd("RETR 99999999999") == line(r.POP_SYNTAX)
    assert await c.cmd("TOP 1") == line(r.POP_SYNTAX)
    assert await c.cmd("TOP 1 x") == line(r.POP_SYNTAX)
    assert await c.cmd("LIST 1 2") == line(r.POP_SYNTAX)
    assert await c.cmd("NOOP now") == line(r.POP_SYNTAX)
    assert await c.cmd("STAT 1") == line(r.POP_SYNTAX)
    assert await c.cmd("stat") == line(f"+OK 3 {TOTAL}")  # keywords are case-insensitive
    assert await c.cmd("QUIT") == b"+OK Bye, 3 messages left\r\n"


async def test_long_line_boundary(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    # 255 octets including CRLF is the RFC 2449 §4 maximum: accepted.
    assert await c.cmd("USER " + "a" * 248) == b"+OK Send your password\r\n"
    # 256 octets: refused, and the connection goes on with the next line.
    assert await c.cmd("USER " + "a" * 249) == line(r.POP_LINE_TOO_LONG)
    await c.send(b"X" * 1000 + b"\r\nCAPA\r\n")
    assert await c.line() == line(r.POP_LINE_TOO_LONG)
    assert await c.line() == b"+OK Capability list follows\r\n"
    await c.multiline()


async def test_long_line_is_logged(server: Pop3Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mailplat.pop3")
    c = await connect(server)
    assert await c.cmd("NOOP " + "x" * 300) == line(r.POP_LINE_TOO_LONG)
    assert any("line-too-long" in rec.getMessage() for rec in caplog.records)


async def test_endless_line_closes_connection(server: Pop3Server) -> None:
    c = await connect(server)
    await c.send(b"N" * (MAX_DISCARD + 5000))
    assert await c.line() == line(r.POP_LINE_TOO_LONG)
    assert await c.line() == line(r.POP_LINE_TOO_LONG)
    assert await c.eof()


async def test_too_many_bad_commands_close(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    await c.send(b"BOGUS\r\n" * 10)
    for _ in range(9):
        assert await c.line() == line(r.POP_BAD_COMMAND)
    assert await c.line() == line(r.POP_TOO_MANY_ERRORS)
    assert await c.eof()


async def test_control_bytes_are_bad_commands(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    await c.send(b"USER al\x00ice\r\nUSER al\rice\r\nUSER \xff\xfe\r\n")
    for _ in range(3):
        assert await c.line() == line(r.POP_BAD_COMMAND)


# -- logins ---------------------------------------------------------------------------


async def test_failed_logins_are_delayed_logged_and_limited(
    tmp_path: Path, backend: DictBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailplat.pop3")
    async with running(backend, failed_login_delay=0.05) as server:
        c = await connect(server)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await login(c, "alice", "wrong") == line(r.POP_AUTH_FAILED)
        assert loop.time() - started >= 0.049  # uvloop's clock and timers count milliseconds
        assert await login(c, "nobody", "x") == line(r.POP_AUTH_FAILED)
        assert await login(c, "alice", "wrong again") == line(r.POP_TOO_MANY_AUTH)
        assert await c.eof()
    failed = [rec.getMessage() for rec in caplog.records if "login-failed" in rec.getMessage()]
    assert len(failed) == 3
    assert not any("wrong" in rec.getMessage() for rec in caplog.records)  # no passwords


async def test_password_may_contain_spaces(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    assert (await login(c, "bob", "bob pw")).startswith(b"+OK Logged in, 0 messages")


async def test_disabled_logon(server: Pop3Server) -> None:
    c = await connect(server)
    assert await login(c, "carol", "c") == line(r.POP_LOGIN_DISABLED)


async def test_second_session_is_in_use(server: Pop3Server) -> None:
    first = await connect(server)
    assert (await login(first)).startswith(b"+OK Logged in")
    second = await connect(server)
    assert await login(second) == line(r.POP_IN_USE)
    # A wrong password learns nothing about the lock.
    assert await login(second, "alice", "bad") == line(r.POP_AUTH_FAILED)
    assert await first.cmd("QUIT") == b"+OK Bye, 3 messages left\r\n"
    assert await first.eof()
    assert (await login(second)).startswith(b"+OK Logged in")


async def test_snapshot_hides_mail_arriving_during_session(
    server: Pop3Server, alice: Maildir
) -> None:
    c = await connect(server)
    assert (await login(c)).startswith(b"+OK Logged in, 3 messages")
    await asyncio.to_thread(alice.deliver, b"Subject: late\r\n\r\nlate\r\n")
    assert await c.cmd("STAT") == line(f"+OK 3 {TOTAL}")
    assert await c.cmd("LIST 4") == line(r.POP_NO_SUCH_MESSAGE)
    assert await c.cmd("QUIT") == b"+OK Bye, 3 messages left\r\n"
    await c.eof()
    c = await connect(server)
    assert (await login(c)).startswith(b"+OK Logged in, 4 messages")


async def test_dropped_connection_deletes_nothing(server: Pop3Server, alice: Maildir) -> None:
    c = await connect(server)
    assert (await login(c)).startswith(b"+OK Logged in")
    assert await c.cmd("DELE 1") == b"+OK Message 1 deleted\r\n"
    assert await c.cmd("DELE 2") == b"+OK Message 2 deleted\r\n"
    await c.close()
    await asyncio.wait_for(server.drained(), 5)
    assert len(Maildir(alice.path).messages()) == 3
    c = await connect(server)  # and the lock was released
    assert (await login(c)).startswith(b"+OK Logged in, 3 messages")


async def test_idle_timeout_says_so_and_deletes_nothing(
    backend: DictBackend, alice: Maildir
) -> None:
    async with running(backend, idle_timeout=0.1) as server:
        c = await connect(server)
        assert (await login(c)).startswith(b"+OK Logged in")
        assert await c.cmd("DELE 1") == b"+OK Message 1 deleted\r\n"
        # A refusal is a reply: the client learns why it was dropped; no UPDATE runs.
        assert await c.line() == line(r.POP_IDLE_TIMEOUT)
        assert await c.eof()
    assert len(Maildir(alice.path).messages()) == 3


async def test_internal_error_is_sys_temp_without_traceback(
    backend: DictBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.explode = True
    async with running(backend) as server:
        c = await connect(server)
        await c.send(b"USER alice\r\nPASS secret\r\n")
        assert await c.line() == b"+OK Send your password\r\n"
        rest = await asyncio.wait_for(c.reader.read(), 5)
        assert rest == line(r.POP_SYS_TEMP)
    assert b"Traceback" not in rest and b"secret detail" not in rest
    errors = [rec for rec in caplog.records if rec.name == "mailplat.pop3" and rec.exc_info]
    assert errors and "internal-error" in errors[0].getMessage()


async def test_on_login_hook_gets_handle_and_ip(backend: DictBackend) -> None:
    seen: list[tuple[str, str]] = []

    async def hook(handle: object, ip: str) -> None:
        seen.append((getattr(handle, "key", ""), ip))

    async with running(backend, on_login=hook) as server:
        c = await connect(server)
        assert (await login(c)).startswith(b"+OK Logged in")
    assert seen == [("po/alice", "127.0.0.1")]


# -- AUTH PLAIN (RFC 5034) --------------------------------------------------------------------


async def test_auth_plain_initial_response(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    assert (await c.cmd(f"AUTH PLAIN {plain('alice', 'secret')}")).startswith(b"+OK Logged in")


async def test_auth_plain_continuation_and_cancel(server: Pop3Server, trickle: bool) -> None:
    c = await connect(server, trickle)
    assert await c.cmd("AUTH") == b"+OK Mechanisms follow\r\n"
    assert await c.multiline() == b"PLAIN\r\n.\r\n"
    assert await c.cmd("AUTH CRAM-MD5") == line(r.POP_BAD_MECHANISM)
    assert await c.cmd("AUTH PLAIN") == b"+ \r\n"
    assert await c.cmd("*") == line(r.POP_AUTH_CANCELLED)
    assert await c.cmd("AUTH PLAIN") == b"+ \r\n"
    assert await c.cmd("not base64!") == line(r.POP_SYNTAX)
    assert await c.cmd(f"AUTH PLAIN {plain('alice', 'nope')}") == line(r.POP_AUTH_FAILED)
    assert await c.cmd(f"AUTH PLAIN {plain('alice', 'secret', 'bob')}") == line(r.POP_AUTH_FAILED)
    assert await c.cmd("AUTH plain") == b"+ \r\n"
    assert (await c.cmd(plain("alice", "secret", "alice"))).startswith(b"+OK Logged in")


async def test_auth_plain_empty_initial_response(server: Pop3Server) -> None:
    c = await connect(server)
    assert await c.cmd("AUTH PLAIN =") == line(r.POP_AUTH_FAILED)


# -- TLS ------------------------------------------------------------------------------


async def test_stls_discards_pipelined_plaintext(backend: DictBackend, tls: TlsPair) -> None:
    async with running(backend, tls=tls) as server:
        c = await connect(server)
        # The injection rides in the same write as STLS ("NO STARTTLS", 2021).
        await c.send(b"STLS\r\nUSER alice\r\nPASS secret\r\n")
        assert await c.line() == line(r.POP_STLS_GO)
        await c.starttls(tls)
        assert backend.calls == []  # the injected PASS never reached the backend
        # Had the injected USER survived, this PASS would log in.
        assert await c.cmd("PASS secret") == line(r.POP_BAD_SEQUENCE)
        assert await c.cmd("CAPA") == b"+OK Capability list follows\r\n"
        assert b"STLS" not in await c.multiline()
        assert await c.cmd("STLS") == line(r.POP_TLS_ACTIVE)  # no TLS inside TLS
        assert (await login(c)).startswith(b"+OK Logged in")
        ssl_obj = c.writer.get_extra_info("ssl_object")
        assert isinstance(ssl_obj, ssl.SSLObject)


async def test_require_tls_for_auth(backend: DictBackend, tls: TlsPair, trickle: bool) -> None:
    async with running(backend, tls=tls, require_tls_for_auth=True) as server:
        c = await connect(server, trickle)
        assert await c.cmd("CAPA") == b"+OK Capability list follows\r\n"
        caps = await c.multiline()
        assert b"STLS\r\n" in caps
        assert b"USER" not in caps and b"SASL" not in caps
        assert await c.cmd("USER alice") == line(r.POP_TLS_REQUIRED)
        assert await c.cmd("PASS secret") == line(r.POP_TLS_REQUIRED)
        assert await c.cmd(f"AUTH PLAIN {plain('alice', 'secret')}") == line(r.POP_TLS_REQUIRED)
        assert backend.calls == []
        assert await c.cmd("STLS") == line(r.POP_STLS_GO)
        await c.starttls(tls)
        assert await c.cmd("CAPA") == b"+OK Capability list follows\r\n"
        caps = await c.multiline()
        assert b"USER\r\n" in caps and b"SASL PLAIN\r\n" in caps and b"STLS" not in caps
        assert (await login(c)).startswith(b"+OK Logged in")


async def test_implicit_tls_pop3s(backend: DictBackend, tls: TlsPair) -> None:
    async with running(backend, tls=tls, implicit=True, require_tls_for_auth=True) as server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=tls.client, server_hostname="localhost"
        )
        c = RawClient(reader, writer, trickle=False)
        assert await c.line() == b"+OK pop.example.test POP3 server ready\r\n"
        assert await c.cmd("CAPA") == b"+OK Capability list follows\r\n"
        caps = await c.multiline()
        assert b"STLS" not in caps and b"USER\r\n" in caps
        assert (await login(c)).startswith(b"+OK Logged in, 3 messages")
        assert await c.cmd("QUIT") == b"+OK Bye, 3 messages left\r\n"
        await c.close()


# -- shutdown ----------------------------------------------------------------------------


async def test_stop_closes_idle_sessions_and_deletes_nothing(
    backend: DictBackend, alice: Maildir
) -> None:
    server = Pop3Server(backend, failed_login_delay=0.01, stop_grace=5.0)
    port = await server.start("127.0.0.1", 0)
    assert server.port == port
    c = await RawClient.connect(port)
    await c.line()
    assert (await login(c)).startswith(b"+OK Logged in")
    assert await c.cmd("DELE 1") == b"+OK Message 1 deleted\r\n"
    await asyncio.wait_for(server.stop(), 3)
    assert await c.eof()
    assert server.active == 0
    assert len(Maildir(alice.path).messages()) == 3
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
