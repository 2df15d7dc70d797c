"""DNS-based checks at MAIL FROM, against a real DNS server on 127.0.0.1.

require_ptr, DNS block lists and reject_invalid_sender_domain, each with its
temporary-failure behaviour; authenticated and whitelisted clients skip the
client checks.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path
from typing import Any

from tests.support import running, write_site
from tests.support_dns import DnsServer, Zone


def site(tmp_path: Path, dns: DnsServer, security: dict[str, Any]) -> Path:
    return write_site(
        tmp_path, site={"server": {"dns_servers": [dns.address]}, "security": security}
    )


def mail_from(port: int, sender: str, login: tuple[str, str] | None = None) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
        s.ehlo("client.test")
        if login:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            s.starttls(context=ctx)
            s.ehlo("client.test")
            s.login(*login)
        code, text = s.mail(sender)
        return code, text.decode()


async def test_require_ptr(tmp_path: Path, dns: DnsServer, zone: Zone) -> None:
    async with running(site(tmp_path, dns, {"require_ptr": True}), tmp_path / "data") as server:
        code, text = await asyncio.to_thread(mail_from, server.port("smtp"), "x@remote.test")
        assert code == 550 and "5.7.25" in text
        # An authenticated client needs no PTR.
        sub = server.port("submission")
        code, _ = await asyncio.to_thread(
            mail_from, sub, "alice@example.test", ("alice@example.test", "alice-secret")
        )
        assert code == 250
        zone.ptr("127.0.0.1", "client.example.test")
        code, _ = await asyncio.to_thread(mail_from, server.port("smtp"), "x@remote.test")
        assert code == 250


async def test_ptr_lookup_failure_is_temporary(tmp_path: Path, dns: DnsServer, zone: Zone) -> None:
    zone.servfail("1.0.0.127.in-addr.arpa")
    async with running(site(tmp_path, dns, {"require_ptr": True}), tmp_path / "data") as server:
        code, text = await asyncio.to_thread(mail_from, server.port("smtp"), "x@remote.test")
        assert code == 450 and "4.7.25" in text


async def test_dnsbl_listing_refuses_and_whitelist_exempts(
    tmp_path: Path, dns: DnsServer, zone: Zone
) -> None:
    zone.a("1.0.0.127.bl.test", "127.0.0.2")
    security = {"dnsbl": [{"zone": "down.test"}, {"zone": "bl.test"}]}
    zone.servfail("1.0.0.127.down.test")  # a dead list is skipped, not fatal
    async with running(site(tmp_path, dns, security), tmp_path / "data") as server:
        code, text = await asyncio.to_thread(mail_from, server.port("smtp"), "x@remote.test")
        assert code == 554 and "bl.test" in text
    security["ip_whitelist"] = ["127.0.0.0/8"]
    async with running(site(tmp_path, dns, security), tmp_path / "data2") as server:
        code, _ = await asyncio.to_thread(mail_from, server.port("smtp"), "x@remote.test")
        assert code == 250


async def test_unlisted_client_passes_every_list(tmp_path: Path, dns: DnsServer) -> None:
    security = {"dnsbl": [{"zone": "bl.test"}, {"zone": "off.test", "enabled": False}]}
    async with running(site(tmp_path, dns, security), tmp_path / "data") as server:
        code, _ = await asyncio.to_thread(mail_from, server.port("smtp"), "x@remote.test")
        assert code == 250


async def test_reject_invalid_sender_domain(tmp_path: Path, dns: DnsServer, zone: Zone) -> None:
    zone.mx("good.test", (10, "mx.good.test"))
    zone.a("mx.good.test", "127.0.0.9")
    zone.a("bare.test", "127.0.0.10")  # no MX, but an address: can receive mail
    zone.null_mx("nomail.test")
    zone.servfail("flaky.test")
    security = {"reject_invalid_sender_domain": True}
    async with running(site(tmp_path, dns, security), tmp_path / "data") as server:
        port = server.port("smtp")
        for sender, expected in [
            ("a@good.test", 250),
            ("a@bare.test", 250),
            ("a@missing.test", 550),
            ("a@nomail.test", 550),
            ("a@flaky.test", 451),
            ("alice@example.test", 250),  # our own domains need no lookup
        ]:
            code, text = await asyncio.to_thread(mail_from, port, sender)
            assert code == expected, (sender, code, text)
