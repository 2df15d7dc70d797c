"""POP3 load: Maildirs filled directly on disk, then N concurrent clients RETR everything.

The same client (raw asyncio, one command at a time, as a mail client does) and
the same Maildir files serve both sides, so the ratio compares servers only.
Passwords are SHA512-CRYPT on both sides (mailplat accepts `$6$` hashes, Dovecot's
passwd-file uses the same string), so neither side pays more for a login.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "bench-secret"
_HASH: dict[str, str] = {}


def password_hash(password: str = PASSWORD) -> str:
    """A SHA512-CRYPT hash (`$6$...`, 5000 rounds), computed once per password."""
    if password not in _HASH:
        from passlib.hash import sha512_crypt

        _HASH[password] = str(sha512_crypt.using(rounds=5000).hash(password))
    return _HASH[password]


def message(index: int, size: int) -> bytes:
    """A plain RFC 5322 message of about `size` bytes, CRLF line endings."""
    head = (
        f"From: sender@remote.test\r\nTo: user@bench.test\r\n"
        f"Subject: bench message {index}\r\nMessage-ID: <bench.{index}@remote.test>\r\n"
        f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\r\n"
    ).encode()
    line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghij\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


def fill_maildir(maildir: Path, count: int, size: int, uid: int = -1, gid: int = -1) -> None:
    """Write `count` messages straight into maildir/new (tmp/ -> rename, like a delivery)."""
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        data = message(i, size)
        name = f"{1700000000 + i}.M{i}P{os.getpid()}.bench,S={len(data)}"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(data)
        if uid >= 0:
            os.chown(tmp, uid, gid)
        tmp.rename(maildir / "new" / name)


@dataclass
class Pop3Result:
    """What one run retrieved and how long it took."""

    messages: int
    octets: int
    seconds: float
    errors: list[str]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


class Pop3Error(RuntimeError):
    """The server answered -ERR or closed early."""


async def _ok(reader: asyncio.StreamReader, what: str) -> bytes:
    line = await reader.readline()
    if not line.startswith(b"+OK"):
        raise Pop3Error(f"{what}: {line[:200]!r}")
    return line


async def _client(port: int, login: str, password: str) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _ok(reader, "greeting")
        writer.write(f"USER {login}\r\n".encode())
        await _ok(reader, "USER")
        writer.write(f"PASS {password}\r\n".encode())
        await _ok(reader, "PASS")
        writer.write(b"STAT\r\n")
        count = int((await _ok(reader, "STAT")).split()[1])
        octets = 0
        for i in range(1, count + 1):
            writer.write(f"RETR {i}\r\n".encode())
            data = await reader.readuntil(b"\r\n.\r\n")
            if not data.startswith(b"+OK"):
                raise Pop3Error(f"RETR {i}: {data[:200]!r}")
            octets += len(data)
        writer.write(b"QUIT\r\n")
        await _ok(reader, "QUIT")
        return count, octets
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _run(port: int, logins: list[str], password: str) -> Pop3Result:
    start = time.perf_counter()
    results = await asyncio.gather(
        *(_client(port, login, password) for login in logins), return_exceptions=True
    )
    seconds = time.perf_counter() - start
    messages = octets = 0
    errors = []
    for res in results:
        if isinstance(res, BaseException):
            errors.append(f"{type(res).__name__}: {res}")
        else:
            messages += res[0]
            octets += res[1]
    return Pop3Result(messages, octets, seconds, errors)


def retrieve_all(port: int, logins: list[str], password: str = PASSWORD) -> Pop3Result:
    """One concurrent client per login; each logs in, RETRs every message, quits."""
    return asyncio.run(_run(port, logins, password))
