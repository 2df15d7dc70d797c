"""A raw SMTP client for transcript tests: bytes out, whole replies in.

Tests need to send what no polite client sends (NUL, bad UTF-8, repeated
parameters, STARTTLS inside TLS), so this talks to the socket directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass


@dataclass
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        """The last line without its code, e.g. '5.5.4 Duplicate parameter BODY'."""
        return self.lines[-1][4:]

    @property
    def first(self) -> str:
        return self.lines[-1]

    def __str__(self) -> str:
        return " | ".join(self.lines)


def client_tls(*, ciphers: str | None = None, max_tls12: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


class Wire:
    """One connection to an SMTP server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, *, source: str | None = None, tls: ssl.SSLContext | None = None
    ) -> Wire:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            local_addr=(source, 0) if source else None,
            ssl=tls,
            server_hostname="mx.example.test" if tls else None,
        )
        return cls(reader, writer)

    async def reply(self, timeout: float = 10.0) -> Reply:
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                raise ConnectionError(f"closed after {lines}")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if line[3:4] != "-":
                return Reply(int(line[:3]), lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, line: str | bytes) -> Reply:
        data = line.encode() if isinstance(line, str) else line
        await self.send(data + b"\r\n")
        return await self.reply()

    async def greet(self, name: str = "client.test") -> Reply:
        banner = await self.reply()
        assert banner.code == 220, banner
        return await self.cmd(f"EHLO {name}")

    async def starttls(self, ctx: ssl.SSLContext | None = None) -> None:
        await self.writer.start_tls(ctx or client_tls(), server_hostname="mx.example.test")

    async def closed(self, timeout: float = 10.0) -> bool:
        """True when the server closed the connection (nothing more to read)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionError, ssl.SSLError):
            return True
        return rest == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
