"""A mix of hostile sessions at once: the log must hold no traceback and no error.

What a scanner, a spammer and a broken client send, all together, against
every listener (SMTP, submission, SMTPS, POP3, POP3S), under both event
loops. Nothing a remote party sends may put a traceback in our log
(RELIABILITY.md guarantee 10); afterwards a normal session still works.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mailplat.runtime.server import Server
from tests.support import maildir_files, wait_for

pytestmark = pytest.mark.both_loops

Attack = Callable[[Server], Awaitable[None]]


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _talk(port: int, chunks: list[bytes], *, tls: bool = False, linger: float = 0.1) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=_tls() if tls else None, server_hostname="x" if tls else None
            ),
            5,
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        await asyncio.sleep(linger)
        writer.transport.abort()  # hang up without QUIT, mid-whatever
    except (OSError, ssl.SSLError):
        pass


def smtp(*chunks: bytes, kind: str = "smtp", tls: bool = False) -> Attack:
    async def attack(server: Server) -> None:
        await _talk(server.port(kind), list(chunks), tls=tls)

    return attack


def pop3(*chunks: bytes, kind: str = "pop3", tls: bool = False) -> Attack:
    async def attack(server: Server) -> None:
        await _talk(server.port(kind), list(chunks), tls=tls)

    return attack


HEAD = b"EHLO x\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
ATTACKS: list[Attack] = [
    smtp(b"\x00\x01\x02\xff" * 100),
    smtp(b"\x16\x03\x01\x02\x00" + b"\x01" * 300),  # a TLS hello on the plain port
    smtp(b"EHLO " + b"A" * 5000 + b"\r\n"),
    smtp(b"A" * 100_000),
    smtp(HEAD + b"Subject: x\r\n\r\nsmuggle\n.\nMAIL FROM:<b@x>\r\n.\r\n"),
    smtp(HEAD + b"Subject: x\r\n\r\n\x00.\r\n.\r\n"),
    smtp(HEAD + b"Subject: half a message"),  # gone mid-DATA
    smtp(b"EHLO x\r\nMAIL FROM:<\xff\xfe@x> SMTPUTF8\r\nRCPT TO:<\xc3@x>\r\n"),
    smtp(b"EHLO x\r\nMAIL FROM:<a@x> BODY=8BITMIME BODY=7BIT SIZE=-1 SIZE=99\r\n"),
    smtp(b"EHLO x\r\nAUTH PLAIN !!!notbase64\r\nAUTH LOGIN\r\n*\r\nAUTH CRAM-MD5\r\n"),
    smtp(b"EHLO x\r\nAUTH PLAIN " + base64.b64encode(b"\xff\x00\xfe\x00\xfd") + b"\r\n"),
    smtp(b"EHLO x\r\nAUTH LOGIN " + base64.b64encode(b"alice") + b"\r\n"),  # gone mid-AUTH
    smtp(b"EHLO x\r\nSTARTTLS\r\n", b"\x16\x03\x01\x00\x10garbage-handshake"),
    smtp(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\n"),
    smtp(b"EHLO x\r\nETRN #queue\r\nEXPN sales\r\nVRFY \x00\r\nHELP me\r\n"),
    smtp(b"GET / HTTP/1.1\r\nHost: mail\r\n\r\n"),
    smtp(b"NOOP\r\n" * 300),
    smtp(b"EHLO x\r\n" + b"RSET\r\n" * 50 + b"QUIT\r\n"),
    smtp(b"EHLO x\r\nMAIL FROM:<a@x>\r\n", kind="submission"),
    smtp(b"EHLO x\r\nAUTH PLAIN AGEAYg==\r\n", kind="submission"),
    smtp(b"not tls at all\r\n", kind="smtps"),
    smtp(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<a@x>\r\n", kind="smtps", tls=True),
    pop3(b"\xff\xfe\x00\r\n" * 20),
    pop3(b"USER " + b"u" * 5000 + b"\r\n"),
    pop3(b"AUTH PLAIN\r\n" + b"%%%%\r\n" + b"AUTH PLAIN AGFsaWNlAA==\r\n"),
    pop3(b"STLS\r\n", b"\x16\x03\x01\x00\x10garbage-handshake"),
    pop3(b"USER alice\r\nPASS " + b"\xff" * 40 + b"\r\nRETR 1\r\nDELE x\r\n"),
    pop3(b"\x16\x03\x01garbage", kind="pop3s"),
    pop3(b"STLS\r\nCAPA\r\n", kind="pop3s", tls=True),
]


async def test_hostile_sessions_leave_no_traceback(
    server: Server, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await asyncio.gather(*(attack(server) for attack in ATTACKS))
    await asyncio.gather(*(attack(server) for attack in ATTACKS))  # and again, concurrently
    await asyncio.sleep(0.5)

    def normal() -> None:
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
            s.sendmail("x@remote.test", ["alice@example.test"], b"Subject: fine\r\n\r\nok\r\n")

    await asyncio.to_thread(normal)
    await wait_for(lambda: len(maildir_files(data_root, "example", "alice")) == 1)
    traced = [rec for rec in caplog.records if rec.exc_info or "Traceback" in rec.getMessage()]
    assert not traced, [f"{rec.name}: {rec.getMessage()}" for rec in traced]
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert not errors, [f"{rec.name}: {rec.getMessage()}" for rec in errors]
