"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA, and no input yields two messages.

Each known end-of-data variant is sent inside one message that tries to
smuggle a second MAIL/RCPT/DATA transaction. The first message must be
refused (bare CR/LF is malformed), the smuggled commands must never run, and
no second message may be delivered. Every case runs once in a single write
and once byte by byte (trickle), since framing bugs show in one or the other.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailplat.runtime.server import Server
from tests.support import maildir_files, wait_for

VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-cr": b"\r.\r",
    "crlf-dot-cr": b"\r\n.\r",
    "crlf-dot-lf": b"\r\n.\n",
    "cr-dot-crlf": b"\r.\r\n",
    "lf-dot-cr": b"\n.\r",
}


def payload(end: bytes) -> bytes:
    smuggled = (
        b"MAIL FROM:<evil@remote.test>\r\n"
        b"RCPT TO:<bob@example.test>\r\n"
        b"DATA\r\n"
        b"Subject: smuggled\r\n\r\nsmuggled body\r\n"
    )
    return b"Subject: outer\r\n\r\nouter body" + end + smuggled + b"\r\n.\r\n"


async def _exchange(port: int, data: bytes, trickle: bool) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = [await reader.readline()]
    head = b"EHLO c.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
    writer.write(head)
    # EHLO is multi-line; read until the 354.
    while not replies[-1].startswith(b"354"):
        replies.append(await reader.readline())
    if trickle:
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
    else:
        writer.write(data)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    rest = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return [*replies, *rest.splitlines(keepends=True)]


@pytest.mark.parametrize("trickle", [False, True], ids=["one-write", "trickle"])
@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
async def test_smuggling_variants_never_make_two_messages(
    server: Server, data_root: Path, variant: str, trickle: bool
) -> None:
    lines = await _exchange(server.port("smtp"), payload(VARIANTS[variant]), trickle)
    after_data = lines[lines.index(next(l for l in lines if l.startswith(b"354"))) + 1 :]
    # Exactly one reply for the message, then 221 for QUIT: no smuggled command ran.
    assert after_data[0].startswith(b"550 5.5.2"), after_data
    assert after_data[1].startswith(b"221"), after_data
    assert len(after_data) == 2
    await asyncio.sleep(0.2)
    assert maildir_files(data_root, "example", "bob") == []
    assert maildir_files(data_root, "example", "alice") == []


async def test_proper_crlf_dot_crlf_ends_data_and_pipelined_second_message_is_separate(
    server: Server, data_root: Path
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port("smtp"))
    await reader.readline()
    two = (
        b"EHLO c.test\r\n"
        b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
        b"Subject: one\r\n\r\n..leading dot\r\n.\r\n"
        b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n"
    )
    writer.write(two)
    out = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert out.count(b"250 2.0.0 OK queued as") == 2
    await wait_for(
        lambda: (
            len(maildir_files(data_root, "example", "alice")) == 1
            and len(maildir_files(data_root, "example", "bob")) == 1
        )
    )
    alice = maildir_files(data_root, "example", "alice")[0].read_bytes()
    assert b"\n.leading dot\n" in alice  # dot-unstuffed once
