"""STARTTLS command injection: no plaintext pipelined after STARTTLS survives the upgrade."""

from __future__ import annotations

import asyncio
import ssl

from mailplat.runtime.server import Server


def _ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def test_pipelined_plaintext_after_starttls_is_discarded(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("smtp"))
    await reader.readline()
    writer.write(b"EHLO c.test\r\n")
    line = await reader.readline()
    while line[3:4] == b"-":
        line = await reader.readline()
    # The injected MAIL FROM rides in the same packet as STARTTLS.
    writer.write(b"STARTTLS\r\nMAIL FROM:<injected@remote.test>\r\n")
    assert (await reader.readline()).startswith(b"220")
    await writer.start_tls(_ctx(), server_hostname="mx.example.test")
    writer.write(b"EHLO c.test\r\n")
    line = await reader.readline()
    while line[3:4] == b"-":
        line = await reader.readline()
    # If the injected MAIL had run, this would be "503 nested MAIL".
    writer.write(b"MAIL FROM:<real@remote.test>\r\n")
    assert (await reader.readline()).startswith(b"250")
    writer.write(b"QUIT\r\n")
    assert (await reader.readline()).startswith(b"221")
    writer.close()


async def test_auth_only_after_tls_on_submission(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("submission"))
    await reader.readline()
    writer.write(b"EHLO c.test\r\nAUTH PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==\r\n")
    lines = []
    while True:
        line = await reader.readline()
        lines.append(line)
        if line.startswith(b"538") or line.startswith(b"5") and line[3:4] == b" ":
            break
    assert not any(b"AUTH" in l for l in lines[:-1])
    assert lines[-1].startswith(b"538")
    writer.write(b"STARTTLS\r\n")
    assert (await reader.readline()).startswith(b"220")
    await writer.start_tls(_ctx(), server_hostname="mx.example.test")
    writer.write(b"EHLO c.test\r\n")
    ehlo = []
    line = await reader.readline()
    ehlo.append(line)
    while line[3:4] == b"-":
        line = await reader.readline()
        ehlo.append(line)
    assert any(b"AUTH" in l and b"PLAIN" in l for l in ehlo)
    writer.write(b"AUTH PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==\r\n")
    assert (await reader.readline()).startswith(b"235")
    writer.close()
