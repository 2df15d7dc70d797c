"""Every refusal is a reply, then a close: under asyncio's loop and under uvloop's.

Connection limits, the per-IP limit, the access list, auto-bans, idle and
data timeouts, a line without an end, a graceful stop, and refusals on the
implicit-TLS port (told over TLS). Each case checks the exact reply, that the
server closed the connection after it, and that the log holds one line for
it and no traceback (issue 9: under uvloop these used to close silently and
log an assertion's traceback).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailplat.core import replies as r
from tests.protocol.smtp_wire import Wire, client_tls
from tests.support import running, write_site

pytestmark = pytest.mark.both_loops


@pytest.fixture(autouse=True)
def log_lines(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    caplog.set_level(logging.INFO)
    lines: list[str] = []
    yield lines
    bad = [rec for rec in caplog.records if rec.exc_info or "Traceback" in rec.getMessage()]
    assert not bad, [rec.getMessage() for rec in bad]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


async def refused(port: int, expected: str, *, source: str | None = None) -> None:
    w = await Wire.open(port, source=source)
    assert (await w.reply()).first == expected
    assert await w.closed()


async def test_connection_limit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = write_site(tmp_path, site={"smtp": {"max_connections": 2}})
    async with running(site, tmp_path / "data") as srv:
        port = srv.port("smtp")
        first, second = await Wire.open(port), await Wire.open(port)
        await first.reply()
        await second.reply()
        await refused(port, r.S421_TOO_MANY_CONNECTIONS)
        await first.close()
        await second.close()
    assert sum("smtp refused" in m for m in caplog.messages) == 1


async def test_per_ip_limit_counts_each_client(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"max_connections_per_ip": 1}})
    async with running(site, tmp_path / "data") as srv:
        port = srv.port("smtp")
        held = await Wire.open(port)
        await held.reply()
        await refused(port, r.S421_TOO_MANY_CONNECTIONS)
        other = await Wire.open(port, source="127.0.0.2")  # another client is not affected
        assert (await other.reply()).code == 220
        await other.close()
        await held.close()


async def test_access_list_refusal(tmp_path: Path) -> None:
    site = write_site(
        tmp_path, site={"smtp": {"access": {"mode": "allow", "addresses": ["127.0.0.2"]}}}
    )
    async with running(site, tmp_path / "data") as srv:
        await refused(srv.port("smtp"), r.S421_ACCESS_DENIED)
        ok = await Wire.open(srv.port("smtp"), source="127.0.0.2")
        assert (await ok.reply()).code == 220
        await ok.close()


async def test_auto_ban_refusal(tmp_path: Path) -> None:
    site = write_site(
        tmp_path,
        site={"security": {"max_failures": 2, "auto_ban": {"enabled": True, "minutes": 5}}},
    )
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()
        await w.cmd("MAIL FROM:<x@remote.test>")
        assert (await w.cmd("RCPT TO:<nobody1@example.test>")).code == 550
        assert (await w.cmd("RCPT TO:<nobody2@example.test>")).code == 550
        assert (await w.reply()).first == r.S421_TOO_MANY_ERRORS
        assert await w.closed()
        await refused(srv.port("smtp"), r.S421_ACCESS_DENIED)


async def test_idle_timeout_says_421(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"idle_timeout_seconds": 1}})
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()
        assert (await w.reply(timeout=5)).first == r.S421_TIMEOUT
        assert await w.closed()


async def test_data_timeout_says_421(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"smtp": {"data_timeout_seconds": 1}})
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()
        await w.cmd("MAIL FROM:<x@remote.test>")
        await w.cmd("RCPT TO:<alice@example.test>")
        assert (await w.cmd("DATA")).code == 354
        # A slowloris: a byte every 0.2 s keeps the idle timer happy, not the data deadline.
        reply = None
        for _ in range(25):
            await w.send(b"x")
            try:
                reply = await w.reply(timeout=0.2)
                break
            except TimeoutError:
                continue
        assert reply is not None and reply.first == r.S421_DATA_TIMEOUT
        assert await w.closed()


async def test_line_without_end_is_cut_with_421(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()
        await w.send(b"x" * (200 * 1024))
        reply = await w.reply()
        assert reply.first == r.S421_LINE_FLOOD
        assert await w.closed()


async def test_graceful_stop_tells_idle_sessions(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        await w.greet()
        stopping = asyncio.create_task(srv.stop(grace=0.5))
        assert (await w.reply()).first == r.S421_SHUTTING_DOWN
        assert await w.closed()
        await stopping


async def test_implicit_tls_refusal_is_told_over_tls(tmp_path: Path) -> None:
    site = write_site(
        tmp_path, site={"smtp": {"access": {"mode": "deny", "addresses": ["127.0.0.0/8"]}}}
    )
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtps"), tls=client_tls())
        assert (await w.reply()).first == r.S421_ACCESS_DENIED
        assert await w.closed()
