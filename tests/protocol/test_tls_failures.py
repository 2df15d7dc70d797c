"""Failed TLS handshakes are one INFO line each, never a traceback; TLS 1.2 is AEAD only.

Scanners, old clients and garbage after STARTTLS used to log ~25 lines of
traceback per connection ("smtp internal-error"). Every case here runs on
both event loops, for SMTP (STARTTLS and implicit TLS) and POP3 (STLS and
implicit TLS), and checks the one line with the peer and the reason.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Iterator

import pytest

from mailplat.runtime.server import Server
from tests.protocol.smtp_wire import Wire, client_tls

pytestmark = pytest.mark.both_loops

GARBAGE = b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64  # a TLS record header, then noise
CBC_ONLY = "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA:AES256-SHA256"


@pytest.fixture(autouse=True)
def clean_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    bad = [rec for rec in caplog.records if rec.exc_info or "Traceback" in rec.getMessage()]
    assert not bad, [rec.getMessage() for rec in bad]
    assert not [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]


async def tls_failures(caplog: pytest.LogCaptureFixture, protocol: str, count: int) -> list[str]:
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while True:
        lines = [m for m in caplog.messages if m.startswith(f"{protocol} tls-failed")]
        if len(lines) >= count or loop.time() > end:
            return lines
        await asyncio.sleep(0.05)


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_garbage_after_starttls(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    w = await Wire.open(server.port("smtp"))
    await w.greet()
    assert (await w.cmd("STARTTLS")).code == 220
    await w.send(GARBAGE)
    assert await w.closed()
    [line] = await tls_failures(caplog, "smtp", 1)
    assert "peer=127.0.0.1" in line and "reason=" in line


async def test_garbage_on_the_implicit_tls_ports(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    assert await raw(server.port("smtps"), GARBAGE) == b""
    assert await raw(server.port("pop3s"), GARBAGE) == b""
    assert len(await tls_failures(caplog, "smtp", 1)) == 1
    assert len(await tls_failures(caplog, "pop3", 1)) == 1


async def test_plain_text_on_the_implicit_tls_port(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    assert await raw(server.port("smtps"), b"EHLO scanner.test\r\n") == b""
    [line] = await tls_failures(caplog, "smtp", 1)
    assert "peer=127.0.0.1" in line


async def test_cbc_only_client_is_refused_and_aead_accepted(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    old = client_tls(ciphers=CBC_ONLY, max_tls12=True)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await Wire.open(server.port("smtps"), tls=old)
    [line] = await tls_failures(caplog, "smtp", 1)
    assert "reason=" in line
    modern = client_tls(ciphers="ECDHE+AESGCM:ECDHE+CHACHA20", max_tls12=True)
    w = await Wire.open(server.port("smtps"), tls=modern)
    assert (await w.reply()).code == 220
    cipher = w.writer.get_extra_info("cipher")
    assert cipher[1] == "TLSv1.2" and ("GCM" in cipher[0] or "CHACHA20" in cipher[0]), cipher
    await w.close()


async def test_stls_with_garbage_and_a_client_that_hangs_up(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("pop3"))
    await reader.readline()
    writer.write(b"STLS\r\n")
    assert (await reader.readline()).startswith(b"+OK")
    writer.write(GARBAGE)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    # A client that hangs up in the middle of the handshake.
    sock = socket.create_connection(("127.0.0.1", server.port("smtps")))
    sock.send(GARBAGE[:5])
    sock.close()
    assert len(await tls_failures(caplog, "pop3", 1)) == 1
    assert len(await tls_failures(caplog, "smtp", 1)) == 1


async def test_one_client_cannot_hold_every_handshake_slot(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Silent connections to an implicit-TLS port: one client gets a few, others still get in."""
    from mailplat.core.tls_listener import MAX_PENDING_PER_IP

    port = server.port("smtps")
    hogs = []
    for _ in range(MAX_PENDING_PER_IP + 20):
        sock = socket.socket()
        sock.bind(("127.0.0.5", 0))
        sock.connect(("127.0.0.1", port))
        hogs.append(sock)
    await asyncio.sleep(0.3)
    w = await Wire.open(port, tls=client_tls())  # another client: a handshake slot for it
    assert (await w.reply()).code == 220
    await w.close()
    lines = await tls_failures(caplog, "smtp", 1)
    assert any("too many TLS handshakes" in line and "127.0.0.5" in line for line in lines)
    for sock in hogs:
        sock.close()
