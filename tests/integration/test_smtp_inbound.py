"""SMTP inbound over real loopback sockets with Python's smtplib and aiosmtplib."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from mailplat.core import replies
from mailplat.runtime.server import Server
from tests.support import maildir_files, running, wait_for, write_site


def _message(
    to: str = "alice@example.test", subject: str = "hello", body: str = "Hi there.\n"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@remote.test"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@remote.test>"
    msg.set_content(body)
    return msg


def _smtp(server: Server, kind: str = "smtp") -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.port(kind), timeout=10)


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def code(reply: str) -> int:
    return int(reply[:3])


async def test_smtplib_delivers_into_maildir(server: Server, data_root: Path) -> None:
    def send() -> None:
        with _smtp(server) as s:
            s.send_message(_message(subject="first"), "sender@remote.test", ["alice@example.test"])

    await asyncio.to_thread(send)
    await wait_for(lambda: len(maildir_files(data_root, "example", "alice")) == 1)
    text = maildir_files(data_root, "example", "alice")[0].read_bytes()
    assert b"Subject: first" in text
    assert b"Received: from " in text and b"by mx.example.test (mailplat) with ESMTP" in text
    assert text.startswith(b"Return-Path: <sender@remote.test>\nDelivered-To: alice@example.test\n")
    assert b"\r\n" not in text  # Maildir holds LF line endings


async def test_ehlo_advertises_extensions(server: Server) -> None:
    def ehlo() -> tuple[int, bytes]:
        with _smtp(server) as s:
            return s.ehlo("client.test")

    status, text = await asyncio.to_thread(ehlo)
    assert status == 250
    for ext in (
        b"PIPELINING",
        b"8BITMIME",
        b"SMTPUTF8",
        b"SIZE 10485760",
        b"STARTTLS",
        b"ENHANCEDSTATUSCODES",
        b"AUTH",
    ):
        assert ext in text, ext


async def test_aiosmtplib_with_starttls_and_auth_relays(server: Server) -> None:
    msg = _message(to="friend@remote.test", subject="relay")
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=server.port("submission"),
        tls_context=_client_tls(),
        start_tls=True,
    ) as client:
        await client.login("alice@example.test", "alice-secret")
        errors, reply = await client.send_message(
            msg, sender="alice@example.test", recipients=["friend@remote.test"]
        )
    assert errors == {}
    assert reply.startswith("2.0.0 OK queued as")
    await wait_for(lambda: server.spool.stats().get("smtp", 0) == 1)


async def test_smtps_implicit_tls_auth(server: Server) -> None:
    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP_SSL(
            "127.0.0.1", server.port("smtps"), context=_client_tls(), timeout=10
        ) as s:
            s.login("bob", "bob-secret")  # bare name: the default postoffice
            return s.send_message(
                _message(to="alice@example.test"), "bob@example.test", ["alice@example.test"]
            )

    assert await asyncio.to_thread(send) == {}


async def test_submission_requires_auth_and_hides_auth_before_tls(server: Server) -> None:
    def run() -> tuple[bytes, tuple[int, bytes], tuple[int, bytes]]:
        with _smtp(server, "submission") as s:
            _, ehlo = s.ehlo("c.test")
            mail = s.mail("alice@example.test")
            auth = s.docmd("AUTH", "PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==")
            return ehlo, mail, auth

    ehlo, mail, auth = await asyncio.to_thread(run)
    assert b"AUTH" not in ehlo
    assert mail[0] == 530 and b"STARTTLS" in mail[1]  # says what to do first
    assert auth[0] == 538


async def test_unknown_user_rejected_and_counted(server: Server) -> None:
    def run() -> tuple[int, bytes]:
        with _smtp(server) as s:
            s.ehlo("c.test")
            s.mail("x@remote.test")
            return s.rcpt("nobody@example.test")

    status, text = await asyncio.to_thread(run)
    assert status == 550 and text.startswith(b"5.1.1")


@pytest.mark.parametrize(
    "rcpt",
    [
        "victim@remote.test",
        "victim%remote.test@example.test",
        "remote.test!victim@example.test",
        '"victim@remote.test"@example.test',
        "<@example.test:victim@remote.test>",
        "victim@remote.test.",
        "VICTIM@REMOTE.TEST",
        "victim@[192.0.2.1]",
    ],
)
async def test_open_relay_forms_refused(server: Server, rcpt: str) -> None:
    def run() -> tuple[int, bytes]:
        with _smtp(server) as s:
            s.ehlo("c.test")
            s.mail("x@remote.test")
            arg = rcpt if rcpt.startswith("<") else f"<{rcpt}>"
            return s.docmd("RCPT", f"TO:{arg}")

    status, _ = await asyncio.to_thread(run)
    # Local-domain forms resolve locally (unknown -> 550); remote forms -> relay denied.
    assert status in (550, 553), status
    assert server.spool.stats().get("smtp", 0) == 0


async def test_authenticated_sender_must_own_address(server: Server) -> None:
    def run() -> tuple[int, bytes]:
        with smtplib.SMTP_SSL(
            "127.0.0.1", server.port("smtps"), context=_client_tls(), timeout=10
        ) as s:
            s.login("alice@example.test", "alice-secret")
            return s.mail("bob@example.test")

    status, _ = await asyncio.to_thread(run)
    assert status == 550


async def test_group_expands_to_members(server: Server, data_root: Path) -> None:
    def send() -> None:
        with _smtp(server) as s:
            s.send_message(
                _message(to="sales@example.test"), "x@remote.test", ["sales@example.test"]
            )

    await asyncio.to_thread(send)
    await wait_for(
        lambda: (
            len(maildir_files(data_root, "example", "alice")) == 1
            and len(maildir_files(data_root, "example", "bob")) == 1
        )
    )


async def test_bad_auth_is_refused_and_delayed(server: Server) -> None:
    def run() -> None:
        with _smtp(server) as s:
            s.ehlo("c.test")
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                s.login("alice", "wrong")
            assert info.value.smtp_code == 535

    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.to_thread(run)
    assert loop.time() - start >= 0.9  # AUTH_FAILURE_DELAY


async def test_size_enforced_at_mail_and_data(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"max_message_size_kb": 1}})
    async with running(site, tmp_path / "data") as srv:

        def run() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with _smtp(srv) as s:
                s.ehlo("c.test")
                at_mail = s.docmd("MAIL", "FROM:<x@remote.test> SIZE=5000")
                s.rset()
                s.mail("x@remote.test")
                s.rcpt("alice@example.test")
                at_data = s.data(b"Subject: big\r\n\r\n" + b"x" * 70 + (b"\r\n" + b"y" * 70) * 40)
                return at_mail, at_data

        at_mail, at_data = await asyncio.to_thread(run)
        assert at_mail[0] == 552
        assert at_data[0] == 552


async def test_max_recipients(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"max_recipients": 2}})
    async with running(site, tmp_path / "data") as srv:

        def run() -> list[int]:
            with _smtp(srv) as s:
                s.ehlo("c.test")
                s.mail("x@remote.test")
                return [
                    s.rcpt(r)[0]
                    for r in ("alice@example.test", "bob@example.test", "postmaster@example.test")
                ]

        assert await asyncio.to_thread(run) == [250, 250, 452]


async def test_max_connections_gives_421(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"max_connections": 1}})
    async with running(site, tmp_path / "data") as srv:
        r1, w1 = await asyncio.open_connection("127.0.0.1", srv.port("smtp"))
        assert (await r1.readline()).startswith(b"220")
        r2, w2 = await asyncio.open_connection("127.0.0.1", srv.port("smtp"))
        line = await r2.readline()
        assert line.decode().strip() == replies.S421_TOO_MANY_CONNECTIONS
        assert await r2.read() == b""
        for w in (w1, w2):
            w.close()


async def test_access_list_denies(tmp_path: Path) -> None:
    site = write_site(
        tmp_path, site={"smtp": {"access": {"mode": "deny", "addresses": ["127.0.0.*"]}}}
    )
    async with running(site, tmp_path / "data") as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port("smtp"))
        assert (await reader.readline()).decode().strip() == replies.S421_ACCESS_DENIED
        writer.close()


async def test_banner_variables(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"banner": "%LOCALDOMAIN% welcomes you at %TIME%"}})
    async with running(site, tmp_path / "data") as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port("smtp"))
        line = (await reader.readline()).decode()
        assert line.startswith("220 example.test welcomes you at ")
        assert "%TIME%" not in line
        writer.close()


async def test_vrfy_and_expn_off_by_default(server: Server) -> None:
    def run() -> tuple[int, int]:
        with _smtp(server) as s:
            s.ehlo("c.test")
            return s.verify("alice@example.test")[0], s.expn("sales@example.test")[0]

    assert await asyncio.to_thread(run) == (252, 502)


async def test_hide_client_ip_and_loop_detection(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"security": {"hide_client_ip": True}})
    data_root = tmp_path / "data"
    async with running(site, data_root) as srv:

        def run() -> tuple[int, bytes]:
            with _smtp(srv) as s:
                s.sendmail("x@remote.test", ["alice@example.test"], b"Subject: ok\r\n\r\nbody\r\n")
                looped = (
                    b"".join(b"Received: from a by b; now\r\n" for _ in range(51))
                    + b"Subject: loop\r\n\r\nx\r\n"
                )
                s.mail("x@remote.test")
                s.rcpt("alice@example.test")
                return s.data(looped)

        status, _ = await asyncio.to_thread(run)
        assert status == 554
        await wait_for(lambda: len(maildir_files(data_root, "example", "alice")) == 1)
        text = maildir_files(data_root, "example", "alice")[0].read_bytes()
        assert b"([127.0.0.1])" in text


async def test_line_limits(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("smtp"))
    await reader.readline()
    writer.write(b"EHLO " + b"a" * 600 + b"\r\n")
    assert (await reader.readline()).startswith(b"500")
    writer.write(
        b"HELO c.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
    )
    for _ in range(4):
        await reader.readline()
    writer.write(b"Subject: long\r\n\r\n" + b"z" * 1200 + b"\r\n.\r\n")
    assert (await reader.readline()).startswith(b"500")
    writer.write(b"NOOP\r\n")
    assert (await reader.readline()).startswith(b"250")  # the session stays sane
    writer.close()


async def test_bad_addresses_get_protocol_errors(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("smtp"))
    await reader.readline()
    writer.write(b"HELO c.test\r\n")
    await reader.readline()
    writer.write(b"MAIL FROM:<a\x00b@remote.test>\r\n")
    assert (await reader.readline())[:1] == b"5"
    writer.write(b"MAIL FROM:<" + b"l" * 70 + b"@remote.test>\r\n")
    assert (await reader.readline())[:1] == b"5"
    writer.write(b"MAIL FROM:<ok@remote.test>\r\nRCPT TO:<x@" + b"d" * 260 + b".test>\r\n")
    assert (await reader.readline()).startswith(b"250")
    assert (await reader.readline())[:1] == b"5"
    writer.write(b"QUIT\r\n")
    assert (await reader.readline()).startswith(b"221")
    writer.close()


async def test_failures_drop_the_connection_and_auto_ban_survives_a_restart(
    tmp_path: Path,
) -> None:
    site = write_site(
        tmp_path,
        site={"security": {"max_failures": 3, "auto_ban": {"enabled": True, "minutes": 10}}},
    )
    data = tmp_path / "data"
    async with running(site, data) as server:
        port = server.port("smtp")

        def fail_three_times() -> list[int]:
            codes = []
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                s.ehlo("bad.test")
                s.mail("x@remote.test")
                for n in range(3):
                    code, _ = s.rcpt(f"nobody{n}@example.test")
                    codes.append(code)
                try:  # the 421 the server sent before closing, or the closed socket
                    codes.append(s.noop()[0])
                except smtplib.SMTPServerDisconnected:
                    codes.append(-1)
            return codes

        codes = await asyncio.to_thread(fail_three_times)
        assert codes[:3] == [550, 550, 550] and codes[-1] in (421, -1), codes

        def banner() -> int:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                    return s.noop()[0]
            except smtplib.SMTPConnectError as exc:
                return exc.smtp_code

        assert await asyncio.to_thread(banner) == 421
    assert (data / "state" / "bans.json").exists()
    async with running(site, data) as again:
        port = again.port("smtp")
        assert await asyncio.to_thread(banner) == 421


async def test_only_real_sasl_mechanisms_are_offered(server: Server) -> None:
    def ehlo_auth() -> set[str]:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as s:
            s.starttls(context=ctx)
            s.ehlo("client.test")
            return set(s.esmtp_features["auth"].upper().split())

    assert await asyncio.to_thread(ehlo_auth) == {"PLAIN", "LOGIN"}
