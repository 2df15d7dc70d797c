"""Helpers for POP3 tests: a dict backend, self-signed TLS, a running Pop3Server.

The backend is the injection point, so a dict of login -> (password, Maildir)
stands in for the config Directory; the Maildir and the server are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailplat.services.pop3.listener import Pop3Server
from mailplat.services.pop3.session import LoginDisabled, MailboxHandle
from mailplat.store.maildir import Maildir


@dataclass
class DictBackend:
    """login -> (password, Maildir); `disabled` logins raise LoginDisabled after a good password."""

    users: dict[str, tuple[str, Maildir]]
    disabled: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)
    explode: bool = False

    async def authenticate(self, login: str, password: str, client_ip: str) -> MailboxHandle | None:
        self.calls.append((login, client_ip))
        if self.explode:
            raise RuntimeError("backend exploded with a secret detail")
        entry = self.users.get(login)
        if entry is None or entry[0] != password:
            return None
        if login in self.disabled:
            raise LoginDisabled(login)
        return MailboxHandle(key=f"po/{login}", maildir=entry[1])


@dataclass(frozen=True)
class TlsPair:
    server: ssl.SSLContext
    client: ssl.SSLContext
    cafile: Path


def make_tls(directory: Path) -> TlsPair:
    """A self-signed ECDSA certificate for localhost and 127.0.0.1, and contexts that trust it."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return TlsPair(server=server, client=client, cafile=cert_path)


def mailbox(root: Path, name: str, *messages: bytes) -> Maildir:
    md = Maildir(root / "postoffices" / "po" / name)
    md.create()
    for message in messages:
        md.deliver(message)
    return md


@contextlib.asynccontextmanager
async def running(
    backend: DictBackend,
    *,
    tls: TlsPair | None = None,
    implicit: bool = False,
    **options: Any,
) -> AsyncIterator[Pop3Server]:
    """A Pop3Server on 127.0.0.1 port 0 (plain with STLS when `tls`, or implicit TLS)."""
    options.setdefault("failed_login_delay", 0.01)
    options.setdefault("host_name", "pop.example.test")
    server = Pop3Server(backend, **options)
    if tls is not None and implicit:
        await server.start("127.0.0.1", 0, ssl_context=tls.server)
    else:
        await server.start("127.0.0.1", 0, starttls_context=tls.server if tls else None)
    try:
        yield server
    finally:
        await server.stop()


class RawClient:
    """A byte-exact POP3 client over asyncio streams, optionally sending byte by byte."""

    # Every client made, so a fixture can close them all (unclosed writers warn).
    opened: ClassVar[list[RawClient]] = []

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.trickle = trickle
        RawClient.opened.append(self)

    @classmethod
    async def close_all(cls) -> None:
        while cls.opened:
            await cls.opened.pop().close()

    @classmethod
    async def connect(cls, port: int, trickle: bool = False) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        import socket

        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, trickle)

    async def send(self, data: bytes) -> None:
        if self.trickle:
            for i in range(len(data)):
                self.writer.write(data[i : i + 1])
                await self.writer.drain()
        else:
            self.writer.write(data)
            await self.writer.drain()

    async def line(self) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 5)

    async def multiline(self) -> bytes:
        """Everything after the status line up to and including `.` CRLF."""
        out = b""
        while True:
            line = await self.line()
            out += line
            if line == b".\r\n":
                return out

    async def cmd(self, text: str) -> bytes:
        await self.send(text.encode() + b"\r\n")
        return await self.line()

    async def eof(self) -> bool:
        """True when the server closed the connection (after any remaining bytes)."""
        rest = await asyncio.wait_for(self.reader.read(), 5)
        return rest == b""

    async def starttls(self, tls: TlsPair) -> None:
        await self.writer.start_tls(tls.client, server_hostname="localhost")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)
