"""SMTP protocol correctness over a real socket, reply by reply (issue 9).

The null reverse-path, ESMTP parameters (repeated, unknown, SIZE, BODY,
SMTPUTF8 and malformed UTF-8), NUL bytes in DATA, the HELO name in Received,
the optional commands (EXPN, HELP, ETRN, VRFY), the per-connection
transaction limit and STARTTLS inside TLS. Every case checks the code and
the enhanced status code, and that no traceback reached the log.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from pathlib import Path

import pytest

from mailplat.core import replies as r
from mailplat.runtime.server import Server
from tests.protocol.smtp_wire import Wire, client_tls
from tests.support import base_postoffice, maildir_files, running, wait_for, write_site


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    yield
    bad = [rec for rec in caplog.records if rec.exc_info or "Traceback" in rec.getMessage()]
    assert not bad, [rec.getMessage() for rec in bad]


async def transaction(w: Wire, sender: str, rcpt: str, body: bytes) -> list[int]:
    codes = [(await w.cmd(f"MAIL FROM:{sender}")).code, (await w.cmd(f"RCPT TO:{rcpt}")).code]
    codes.append((await w.cmd("DATA")).code)
    await w.send(body + b"\r\n.\r\n")
    codes.append((await w.reply()).code)
    return codes


# -- the null reverse-path --------------------------------------------------------------


async def test_null_reverse_path_is_accepted_and_delivered(server: Server, data_root: Path) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    codes = await transaction(w, "<>", "<alice@example.test>", b"Subject: bounce\r\n\r\nDSN")
    assert codes == [250, 250, 354, 250]
    await wait_for(lambda: len(maildir_files(data_root, "example", "alice")) == 1)
    stored = maildir_files(data_root, "example", "alice")[0].read_bytes()
    assert stored.startswith(b"Return-Path: <>\n")
    await w.close()


async def test_null_sender_with_many_recipients_and_rset(server: Server) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    assert (await w.cmd("MAIL FROM:<>")).code == 250
    assert (await w.cmd("MAIL FROM:<>")).first == r.S503_NESTED_MAIL  # <> still opened it
    assert (await w.cmd("RCPT TO:<alice@example.test>")).code == 250
    assert (await w.cmd("RCPT TO:<bob@example.test>")).code == 250
    assert (await w.cmd("RSET")).code == 250
    assert (await w.cmd("RCPT TO:<bob@example.test>")).first == r.S503_NEED_MAIL
    await w.close()


# -- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (b"MAIL FROM:<x@remote.test> BODY=8BITMIME BODY=7BIT", "555 5.5.4"),
        (b"MAIL FROM:<x@remote.test> SIZE=10 size=10", "555 5.5.4"),
        (b"MAIL FROM:<x@remote.test> FROB=1", "555 5.5.4"),
        (b"MAIL FROM:<x@remote.test> RET=HDRS", "555 5.5.4"),
        (b"MAIL FROM:<x@remote.test> BODY=BINARYMIME", "501 5.5.4"),
        (b"MAIL FROM:<x@remote.test> SIZE=lots", "501 5.5.4"),
        (b"MAIL FROM:<x@remote.test> SMTPUTF8=yes", "501 5.5.4"),
        (b"MAIL FROM:<x@remote.test> =x", "501 5.5.4"),
        (b"MAIL FROM:<x@remote.test> SIZE=999999999999", "552 5.3.4"),
        ("MAIL FROM:<jörg@remote.test>".encode(), "553 5.6.7"),
        (b"MAIL FROM:<j\xff\xfe@remote.test> SMTPUTF8", "553 5.1.7"),
        (b"MAIL FROM:<x@remote.test", "501 5.5.4"),
        (b"MAIL TO:<x@remote.test>", "501 5.5.4"),
    ],
)
async def test_mail_parameters(server: Server, command: bytes, expected: str) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    reply = await w.cmd(command)
    assert reply.first.startswith(expected), reply
    # The session stays sane: a good MAIL still works afterwards.
    assert (await w.cmd("MAIL FROM:<x@remote.test>")).code == 250
    await w.close()


async def test_utf8_addresses_need_smtputf8_and_valid_utf8(server: Server) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    assert (await w.cmd("MAIL FROM:<x@remote.test>")).code == 250
    assert (await w.cmd("RCPT TO:<jörg@example.test>".encode())).first.startswith("553 5.6.7")
    assert (await w.cmd("RSET")).code == 250
    assert (await w.cmd("MAIL FROM:<jörg@remote.test> SMTPUTF8".encode())).code == 250
    assert (await w.cmd(b"RCPT TO:<\xc3(@example.test>")).first.startswith("553 5.1.3")
    assert (await w.cmd("RCPT TO:<jörg@example.test>".encode())).first.startswith("550 5.1.1")
    assert (await w.cmd("RCPT TO:<alice@example.test>")).code == 250
    assert (await w.cmd("RCPT TO:<bob@example.test> NOTIFY=NEVER")).first.startswith("555 5.5.4")
    await w.close()


async def test_size_is_checked_against_free_disk_space(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"min_free_disk_mb": 10**9}})
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()
        reply = await w.cmd("MAIL FROM:<x@remote.test> SIZE=1000")
        assert reply.first == r.S452_NO_SPACE
        await w.close()


# -- NUL and the Received header ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"Subject: nul\r\n\r\nbefore\r\n\x00.\r\nMAIL FROM:<evil@remote.test>\r\nafter",
        b"Subject: nul\x00inside\r\n\r\nbody",
    ],
    ids=["nul-dot", "nul-in-header"],
)
async def test_nul_in_data_is_refused_whole(server: Server, data_root: Path, body: bytes) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    codes = await transaction(w, "<x@remote.test>", "<alice@example.test>", body)
    assert codes[-1] == 550
    assert (await w.cmd("NOOP")).code == 250  # nothing smuggled ran, the session is sane
    await asyncio.sleep(0.2)
    assert maildir_files(data_root, "example", "alice") == []
    await w.close()


@pytest.mark.parametrize(
    ("helo", "shown"),
    [
        ("(x);(x);(x)", "from unknown (helo=?x?;?x?;?x? [127.0.0.1])"),
        ("client.example.test", "from client.example.test ([127.0.0.1])"),
        ("[192.0.2.7]", "from [192.0.2.7] ([127.0.0.1])"),
        ("a\\b\x01c", "from unknown (helo=a?b?c [127.0.0.1])"),
    ],
)
async def test_helo_name_cannot_break_the_received_header(
    server: Server, data_root: Path, helo: str, shown: str
) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.reply()
    assert (await w.cmd(f"EHLO {helo}".encode())).code == 250
    codes = await transaction(w, "<x@remote.test>", "<alice@example.test>", b"Subject: h\r\n\r\nb")
    assert codes[-1] == 250
    await wait_for(lambda: len(maildir_files(data_root, "example", "alice")) == 1)
    raw = maildir_files(data_root, "example", "alice")[0].read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    received = " ".join(msg.get_all("Received", [])[0].split())
    assert received.startswith(shown), received
    assert msg["Subject"] == "h"  # the header block is intact after Received
    await w.close()


# -- optional commands -----------------------------------------------------------------------


async def test_expn_help_etrn_refused_by_default(server: Server) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    assert (await w.cmd("EXPN sales@example.test")).first == r.S502_NOT_IMPLEMENTED
    assert (await w.cmd("ETRN dest.test")).first == r.S502_NOT_IMPLEMENTED
    assert (await w.cmd("VRFY alice@example.test")).code == 252
    helped = await w.cmd("HELP")  # HELP is allowed by default
    assert helped.code == 214
    listed = set(helped.lines[-1].split()[2:])
    assert {"MAIL", "RCPT", "DATA", "STARTTLS", "HELP"} <= listed
    assert not {"EXPN", "ETRN", "VRFY"} & listed
    await w.close()


async def test_expn_and_help_when_allowed_and_refused(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"allowed_commands": ["EXPN", "VRFY"]}})
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()
        expanded = await w.cmd("EXPN sales@example.test")
        assert expanded.lines == ["250-2.1.5 <alice@example.test>", "250 2.1.5 <bob@example.test>"]
        assert (await w.cmd("EXPN sales")).code == 250  # the default postoffice's domain
        assert (await w.cmd("EXPN alice@example.test")).lines == ["250 2.1.5 <alice@example.test>"]
        assert (await w.cmd("EXPN nobody@example.test")).first == r.S550_NO_SUCH_USER
        assert (await w.cmd("VRFY bob@example.test")).code == 250
        assert (await w.cmd("HELP")).first == r.S502_NOT_IMPLEMENTED  # HELP left out: refused
        await w.close()


async def test_transactions_per_connection_limit(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"max_messages_per_connection": 3}})
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()
        for _ in range(3):
            assert (await w.cmd("MAIL FROM:<x@remote.test>")).code == 250
            assert (await w.cmd("RSET")).code == 250
        assert (await w.cmd("MAIL FROM:<x@remote.test>")).first == r.S421_TOO_MANY_MESSAGES
        assert await w.closed()


async def test_default_allows_many_transactions_on_one_connection(
    server: Server, data_root: Path
) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    # aiosmtpd cut transaction 101 with "421 MAIL sent too many times"; a RSET
    # after each message (as connection-reusing clients send) is no junk either.
    for n in range(120):
        await w.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [(await w.reply()).code for _ in range(3)] == [250, 250, 354]
        await w.send(b"Subject: %d\r\n\r\nbody\r\n.\r\nRSET\r\n" % n)
        assert [(await w.reply()).code for _ in range(2)] == [250, 250]
    await w.close()
    await wait_for(lambda: len(maildir_files(data_root, "example", "bob")) == 120)


async def test_junk_commands_are_limited(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"max_junk_commands": 5}})
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()  # EHLO counts as one
        for _ in range(4):
            assert (await w.cmd("NOOP")).code == 250
        assert (await w.cmd("NOOP")).first == r.S421_TOO_MANY_COMMANDS
        assert await w.closed()


# -- STARTTLS ----------------------------------------------------------------------------------


async def test_starttls_inside_tls_is_refused(server: Server) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    assert (await w.cmd("STARTTLS")).first == r.S220_READY_TLS
    await w.starttls()
    ehlo = await w.cmd("EHLO client.test")
    assert "STARTTLS" not in " ".join(ehlo.lines)
    assert (await w.cmd("STARTTLS")).first == r.S503_TLS_ACTIVE
    assert (await w.cmd("MAIL FROM:<x@remote.test>")).code == 250  # still a working session
    await w.close()
    implicit = await Wire.open(server.port("smtps"), tls=client_tls())
    await implicit.greet()
    assert (await implicit.cmd("STARTTLS")).first == r.S503_TLS_ACTIVE
    await implicit.close()


async def test_starttls_forgets_the_plaintext_session(server: Server) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    assert (await w.cmd("MAIL FROM:<x@remote.test>")).code == 250
    assert (await w.cmd("STARTTLS")).code == 220
    await w.starttls()
    # RFC 3207 §4.2: HELO and the open transaction are gone.
    assert (await w.cmd("MAIL FROM:<x@remote.test>")).first == r.S503_HELO_FIRST
    await w.close()


async def test_bad_commands_get_codes_and_the_session_stays_sane(server: Server) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.reply()
    assert (await w.cmd("MAIL FROM:<x@remote.test>")).first == r.S503_HELO_FIRST
    assert (await w.cmd("EHLO")).first == r.S501_SYNTAX_EHLO
    assert (await w.cmd(b"\xff\xfe")).code == 500
    assert (await w.cmd("BDAT 10 LAST")).first == r.S500_UNRECOGNIZED
    assert (await w.cmd("EHLO c.test")).code == 250
    assert (await w.cmd("DATA")).first == r.S503_NEED_MAIL
    assert (await w.cmd("MAIL FROM:<x@remote.test>")).code == 250
    assert (await w.cmd("DATA")).first == r.S503_NEED_RCPT
    assert (await w.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==")).first == (
        r.S503_AUTH_IN_TRANSACTION
    )
    assert (await w.cmd("QUIT")).first == r.S221_BYE
    assert await w.closed()


async def test_http_on_the_smtp_port_is_told_and_dropped(server: Server) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.reply()
    await w.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await w.reply()).first == r.S421_NOT_HTTP
    assert await w.closed()


async def test_pipelined_replies_come_in_one_write(server: Server) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.reply()
    await w.send(
        b"EHLO c.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<bob@example.test>\r\nDATA\r\n"
    )
    # Everything up to 354 arrives together: read it with one recv-sized read.
    await asyncio.sleep(0.2)
    chunk = await asyncio.wait_for(w.reader.read(65536), 5)
    assert chunk.count(b"\r\n") >= 5 and chunk.rstrip().endswith(r.S354_START_DATA.encode())
    await w.close()


def _postoffice_with_quota() -> dict:  # type: ignore[type-arg]
    po = base_postoffice()
    po["mailboxes"]["alice"]["quota_mb"] = 1
    return po


async def test_bare_postmaster_is_accepted(server: Server, data_root: Path) -> None:
    """RFC 5321 §4.5.1: RCPT TO:<Postmaster> with no domain must work."""
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    codes = await transaction(w, "<x@remote.test>", "<Postmaster>", b"Subject: hi pm\r\n\r\nb")
    assert codes == [250, 250, 354, 250]
    await wait_for(lambda: len(maildir_files(data_root, "example", "postmaster")) == 1)
    await w.close()


async def test_vrfy_answers_as_rcpt_would(tmp_path: Path) -> None:
    po = base_postoffice()
    po["domains"]["example.org"] = {"catchall": "bob"}
    site = write_site(
        tmp_path, site={"smtp": {"allowed_commands": ["VRFY"]}}, postoffices={"example": po}
    )
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()
        assert (await w.cmd("VRFY alice")).first.startswith("250 2.1.5 <alice@example.")
        assert (await w.cmd("VRFY nobody@example.org")).code == 250  # the catchall takes it
        assert (await w.cmd("VRFY nobody@example.test")).first == r.S550_NO_SUCH_USER
        assert (await w.cmd("VRFY someone@remote.test")).code == 252
        await w.close()


async def test_a_flood_on_port_25_leaves_submission_open(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"max_connections": 3, "max_connections_per_ip": 50}})
    async with running(site, tmp_path / "data") as srv:
        held = [await Wire.open(srv.port("smtp")) for _ in range(3)]
        for h in held:
            await h.reply()
        refused = await Wire.open(srv.port("smtp"))
        assert (await refused.reply()).first == r.S421_TOO_MANY_CONNECTIONS
        sub = await Wire.open(srv.port("submission"))
        assert (await sub.reply()).code == 220  # counted apart
        for w in (*held, sub, refused):
            await w.close()


async def test_a_helo_loop_cannot_hold_a_connection(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"max_junk_commands": 5}})
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.reply()
        for _ in range(5):
            assert (await w.cmd("HELO c.test")).code == 250
        assert (await w.cmd("HELO c.test")).first == r.S421_TOO_MANY_COMMANDS
        assert await w.closed()
