"""Fixtures for outbound delivery: a real DNS server, loopback receivers, a real spool.

`harness` wires the real pieces together: a site written as YAML and loaded
by the real loader (dns_servers -> the test DNS server, remote_port -> the
receivers' port), a real Spool in tmp, and an OutboundDelivery whose inject is
the spool's own receive (so DSNs land in incoming/, where tests read them)
and whose clock is a FakeClock the test moves forward.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailplat.config.directory import Directory
from mailplat.config.load import load_site
from mailplat.connectors.smtp_out.deliver import BADMAIL, QUEUE, OutboundDelivery
from mailplat.core.clock import FakeClock
from mailplat.core.envelope import Envelope
from mailplat.core.ids import new_id
from mailplat.spool.queue import Spool
from tests.support import deep_merge, write_site
from tests.support_dns import DnsServer
from tests.support_smtp import Receiver, Script, free_port


def message(subject: str = "hello", body: str = "Hi there.\r\n", extra: str = "") -> bytes:
    return (
        "From: Alice <alice@example.test>\r\n"
        "To: bob@dest.test\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n"
        f"{extra}"
        "\r\n"
        f"{body}"
    ).encode()


class Harness:
    """A site, a spool and an OutboundDelivery on a fake clock."""

    def __init__(self, root: Path, dns: DnsServer, port: int) -> None:
        self.root = root
        self.dns = dns
        self.zone = dns.zone
        self.port = port
        self.clock = FakeClock()
        self.spool = Spool(root / "spool")
        self.spool.open()
        self.receivers: list[Receiver] = []
        self.site_extra: dict[str, Any] = {}
        self.postoffices: dict[str, dict[str, Any]] | None = None
        self._directory: Directory | None = None
        self.outbound = OutboundDelivery(
            self.spool, self.directory, self.spool.receive, self.clock, dns_timeout=0.5
        )

    # -- config ------------------------------------------------------------------

    def configure(self, site: dict[str, Any] | None = None, **postoffices: Any) -> Directory:
        """(Re)write the site YAML and load it; the outbound worker sees it at once."""
        base = {
            "server": {"dns_servers": [self.dns.address], "host_name": "out.example.test"},
            "delivery": {
                "remote_port": self.port,
                "remote_timeout_seconds": 2,
                "delay_notifications": {"mode": "off"},
            },
        }
        self.site_extra = deep_merge(base, site or {})
        site_dir = write_site(
            self.root, site=self.site_extra, postoffices=postoffices or None, tls=False
        )
        self._directory = Directory(load_site(site_dir))
        return self._directory

    def directory(self) -> Directory:
        if self._directory is None:
            self.configure()
        assert self._directory is not None
        return self._directory

    # -- remote side -------------------------------------------------------------

    async def receiver(self, host: str = "127.0.0.2", script: Script | None = None) -> Receiver:
        rx = await Receiver(host, self.port, script).start()
        self.receivers.append(rx)
        return rx

    # -- queue -------------------------------------------------------------------

    async def queue(
        self,
        rcpts: list[str],
        data: bytes | None = None,
        mail_from: str = "alice@example.test",
        meta: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Put a message in the smtp queue the way the MTA does; its record id."""
        env = Envelope(
            mail_from=mail_from,
            rcpts=tuple(rcpts),
            trace_id=new_id(),
            received_at=self.clock.now(),
            meta=meta,
        )
        msg_id = await self.spool.receive(env, data if data is not None else message())
        await self.spool.route(msg_id, [(QUEUE, env)])
        return f"{msg_id}.0"

    def record(self, rid: str, queue: str = QUEUE) -> Envelope:
        return self.spool.read_record(queue, rid)[0]

    def queued(self) -> list[str]:
        return self.spool.records(QUEUE)

    def badmail(self) -> list[str]:
        return self.spool.records(BADMAIL)

    def notices(self) -> list[tuple[Envelope, EmailMessage]]:
        """DSNs the worker injected (they wait in incoming/, no MTA runs here)."""
        out = []
        for msg_id in self.spool.incoming():
            env, data = self.spool.read_incoming(msg_id)
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append((env, parsed))
        return out

    async def close(self) -> None:
        for rx in self.receivers:
            await rx.stop()
        self.spool.close()


@pytest.fixture
async def harness(tmp_path: Path, dns: DnsServer) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, dns, free_port())
    h.configure()
    try:
        yield h
    finally:
        await h.close()


def dsn_parts(msg: EmailMessage) -> tuple[dict[str, str], list[dict[str, str]], str]:
    """(per-message fields text, per-recipient field dicts, returned headers) of a DSN."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    status = parts[1]
    # The email package parses message/delivery-status into header blocks.
    blocks = [dict(b.items()) for b in status.get_payload()]
    per_message = blocks[0]  # Reporting-MTA, Arrival-Date, ...
    per_rcpt = [{k.lower(): str(v) for k, v in b.items()} for b in blocks[1:]]
    headers = parts[2].get_payload(decode=True).decode()
    return {k.lower(): str(v) for k, v in per_message.items()}, per_rcpt, headers
