"""A reload whose new listener cannot bind: refused for the listeners, said, no traceback."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from tests.protocol.smtp_wire import Wire
from tests.support import base_site, deep_merge, dump, running, write_site


async def test_reload_to_a_busy_port_keeps_the_listeners(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    site = write_site(tmp_path)
    async with running(site, tmp_path / "data") as srv:
        old_port = srv.port("smtp")
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        try:
            data = deep_merge(
                base_site(tmp_path / "tls"),
                {"listeners": {"smtp": {"bind": [f"127.0.0.1:{busy}"]}}},
            )
            dump(site / "site.yaml", data)
            reply = await srv.reload("test")
            assert reply["ok"] and reply["listener_errors"], reply
            assert str(busy) in reply["listener_errors"][0]
            assert srv.port("smtp") == old_port  # the old bind still serves
            w = await Wire.open(old_port)
            assert (await w.greet()).code == 250
            await w.close()
        finally:
            holder.close()
    assert not [r for r in caplog.records if r.exc_info]


async def test_auth_settings_change_live_on_reload(tmp_path: Path) -> None:
    """A reload that requires TLS for AUTH is in force for the next session, not at restart."""
    site = write_site(tmp_path)
    async with running(site, tmp_path / "data") as srv:
        w = await Wire.open(srv.port("smtp"))
        assert "AUTH" in " ".join((await w.greet()).lines)  # plain AUTH allowed on port 25 here
        await w.close()
        data = deep_merge(
            base_site(tmp_path / "tls"), {"listeners": {"smtp": {"auth_requires_tls": True}}}
        )
        dump(site / "site.yaml", data)
        assert (await srv.reload("test"))["ok"]
        w = await Wire.open(srv.port("smtp"))
        ehlo = " ".join((await w.greet()).lines)
        assert "AUTH" not in ehlo and "STARTTLS" in ehlo
        reply = await w.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlLXNlY3JldA==")
        assert reply.code == 538
        await w.close()


async def test_pop3_settings_change_live_on_reload(tmp_path: Path) -> None:
    import asyncio

    from mailplat.core import replies as r

    site = write_site(tmp_path)
    async with running(site, tmp_path / "data") as srv:
        data = deep_merge(
            base_site(tmp_path / "tls"),
            {"listeners": {"pop3": {"auth_requires_tls": True}}, "pop3": {"max_connections": 1}},
        )
        dump(site / "site.yaml", data)
        assert (await srv.reload("test"))["ok"]
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port("pop3"))
        assert (await reader.readline()).startswith(b"+OK")
        writer.write(b"USER alice\r\n")
        assert (await reader.readline()).decode().strip() == r.POP_TLS_REQUIRED
        second_r, second_w = await asyncio.open_connection("127.0.0.1", srv.port("pop3"))
        assert (await second_r.readline()).decode().strip() == r.POP_TOO_MANY_CONNECTIONS
        writer.close()
        second_w.close()
