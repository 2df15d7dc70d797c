"""Through a real Server: smtplib -> mailplat (MTA, smtp queue, outbound) -> loopback MX.

The site's DNS is the test DNS server and its remote_port the receivers'
port; relaying is allowed from 127.0.0.1 only (privileged_ips).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailplat.runtime.server import Server
from tests.support import base_postoffice, deep_merge, maildir_files, running, wait_for, write_site
from tests.support_dns import DnsServer
from tests.support_smtp import Receiver, Script, free_port


def relay_site(
    tmp_path: Path, dns: DnsServer, port: int, extra: dict[str, Any] | None = None
) -> Path:
    """A site relaying for 127.0.0.1 to dest.test, whose MX is 127.0.0.2 on `port`."""
    dns.zone.mx("dest.test", (10, "mx1.dest.test"))
    dns.zone.a("mx1.dest.test", "127.0.0.2")
    site = {
        "server": {"dns_servers": [dns.address]},
        "relay": {"privileged_ips": ["127.0.0.1"]},
        "delivery": {"remote_port": port, "remote_timeout_seconds": 5},
    }
    return write_site(tmp_path, site=deep_merge(site, extra or {}), tls=False)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def server(tmp_path: Path, dns: DnsServer, port: int) -> AsyncIterator[Server]:
    site = relay_site(tmp_path, dns, port)
    async with running(site, tmp_path / "data") as srv:
        yield srv


def send(server: Server, rcpts: list[str], subject: str) -> None:
    msg = (
        f"From: alice@example.test\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.test>\r\n\r\nBody of {subject}.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.sendmail("alice@example.test", rcpts, msg)


async def test_message_to_a_remote_address_reaches_its_mx(server: Server, port: int) -> None:
    rx = await Receiver("127.0.0.2", port).start()
    try:
        await asyncio.to_thread(send, server, ["bob@dest.test", "alice@example.test"], "e2e")
        [got] = await rx.wait(1)
        assert got.rcpts == ["bob@dest.test"]
        assert got.mail_from == "alice@example.test"
        assert got.helo == "mx.example.test"
        assert b"Subject: e2e" in got.data and b"Received: from " in got.data
        await wait_for(lambda: server.spool.records("smtp") == [])
    finally:
        await rx.stop()


async def test_remote_rejection_bounces_into_the_senders_mailbox(
    server: Server, port: int, tmp_path: Path
) -> None:
    script = Script(rcpt_reply=lambda a: "550 5.1.1 <nobody@dest.test>: no such user")
    rx = await Receiver("127.0.0.2", port, script).start()
    data_root = tmp_path / "data"
    try:
        await asyncio.to_thread(send, server, ["nobody@dest.test"], "doomed")
        await wait_for(lambda: len(maildir_files(data_root, "example", "alice")) == 1)
    finally:
        await rx.stop()
    raw = maildir_files(data_root, "example", "alice")[0].read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg.get_content_type() == "multipart/report"
    assert b"Diagnostic-Code: smtp; 550 5.1.1 <nobody@dest.test>: no such user" in raw
    assert b"Subject: doomed" in raw
    assert server.spool.records("smtp") == []


async def test_nul_never_reaches_the_outbound_wire(server: Server, port: int) -> None:
    """A NUL ends the data for servers that strip it: refused before it can be relayed."""
    rx = await Receiver("127.0.0.2", port).start()
    try:

        def relay(body: bytes) -> tuple[int, bytes]:
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
                s.ehlo("c.test")
                s.mail("alice@example.test")
                s.rcpt("bob@dest.test")
                return s.data(body)

        smuggle = b"Subject: nul\r\n\r\nbefore\r\n\x00.\r\nMAIL FROM:<evil@x>\r\nafter\r\n"
        code, text = await asyncio.to_thread(relay, smuggle)
        assert code == 550 and text.startswith(b"5.6.0"), (code, text)
        code, _ = await asyncio.to_thread(relay, b"Subject: clean\r\n\r\nclean body\r\n")
        assert code == 250
        [got] = await rx.wait(1)
        assert b"Subject: clean" in got.data and b"\x00" not in got.data
        await asyncio.sleep(0.3)
        assert len(rx.got) == 1  # the refused message never went out
    finally:
        await rx.stop()


async def test_etrn_starts_delivery_for_a_domain_we_are_backup_mx_for(
    tmp_path: Path, dns: DnsServer, port: int
) -> None:
    """RFC 1985: a backup MX holds mail for a domain until its primary asks with ETRN."""
    postoffice = base_postoffice()
    postoffice["domains"]["backup.test"] = {"smart_host": f"127.0.0.2:{port}"}
    site = write_site(
        tmp_path,
        site={
            "server": {"dns_servers": [dns.address]},
            "delivery": {"remote_port": port, "remote_timeout_seconds": 5},
            "smtp": {"allowed_commands": ["ETRN"]},
        },
        postoffices={"example": postoffice},
        tls=False,
    )
    async with running(site, tmp_path / "data") as srv:
        # The primary is down: the first attempt fails and is deferred for minutes.
        await asyncio.to_thread(send, srv, ["someone@backup.test"], "held")
        await wait_for(lambda: any(e.attempts for e in _smtp_entries(srv)), timeout=20)
        rx = await Receiver("127.0.0.2", port).start()
        try:

            def etrn(node: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
                with smtplib.SMTP(
                    "127.0.0.1", srv.port("smtp"), timeout=10, source_address=(source, 0)
                ) as s:
                    s.ehlo("c.test")
                    assert "etrn" in s.esmtp_features
                    return s.docmd("ETRN", node)

            # Nobody may hurry another domain's queue, nor ours.
            assert (await asyncio.to_thread(etrn, "elsewhere.test"))[0] == 459
            assert (await asyncio.to_thread(etrn, "example.test"))[0] == 459
            code, reply = await asyncio.to_thread(etrn, "backup.test", "127.0.0.9")
            assert code == 253 and b"1 pending" in reply
            [got] = await rx.wait(1, timeout=10)
            assert b"Subject: held" in got.data
            assert (await asyncio.to_thread(etrn, "backup.test"))[0] == 251  # nothing left
        finally:
            await rx.stop()


def _smtp_entries(server: Server) -> list:  # type: ignore[type-arg]
    from mailplat.connectors.smtp_out import manage

    return manage.entries(server.spool)
