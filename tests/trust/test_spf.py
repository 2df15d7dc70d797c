"""SPF (RFC 7208) over the real DNS server: every result, the limits, macros, and RCPT refusals."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import pytest

from mailplat.core import replies
from mailplat.dns.resolver import Resolver
from mailplat.trust.spf import check_host
from tests.support import maildir_files, running, wait_for
from tests.support_dns import DnsServer, Zone
from tests.trust.conftest import mail, trust_site


async def spf(
    dns: DnsServer, domain: str, ip: str = "192.0.2.10", sender: str = ""
) -> tuple[str, str]:
    result = await check_host(
        Resolver([dns.address], timeout=1.0), ip, domain, sender or f"user@{domain}", "helo.test"
    )
    return result.result, result.reason


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "pass"),
        ("v=spf1 ip4:198.51.100.1 -all", "fail"),
        ("v=spf1 ip4:198.51.100.1 ~all", "softfail"),
        ("v=spf1 ip4:198.51.100.1 ?all", "neutral"),
        ("v=spf1 ip4:198.51.100.1", "neutral"),
        ("v=spf1 -ip4:192.0.2.10 +all", "fail"),
        ("v=spf1 ip6:2001:db8::/32 -all", "fail"),
        ("v=spf1 bogus:foo -all", "permerror"),
        ("v=spf1 ip4:300.1.1.1 -all", "permerror"),
        ("v=spf1 a:/33 -all", "permerror"),
        ("v=spf1 redirect=a.test redirect=b.test", "permerror"),
        ("v=spf10 -all", "none"),
    ],
)
async def test_results(dns: DnsServer, zone: Zone, record: str, expected: str) -> None:
    zone.txt("s.test", record)
    assert (await spf(dns, "s.test"))[0] == expected


async def test_none_when_no_record_or_no_domain(dns: DnsServer, zone: Zone) -> None:
    zone.txt("s.test", "some other text")
    assert (await spf(dns, "s.test"))[0] == "none"
    assert (await spf(dns, "nxdomain.test"))[0] == "none"


async def test_two_records_are_a_permerror(dns: DnsServer, zone: Zone) -> None:
    zone.txt("s.test", "v=spf1 -all")
    zone.txt("s.test", "v=spf1 +all")
    assert (await spf(dns, "s.test"))[0] == "permerror"


async def test_servfail_is_a_temperror(dns: DnsServer, zone: Zone) -> None:
    zone.servfail("s.test")
    assert (await spf(dns, "s.test"))[0] == "temperror"
    zone.heal("s.test")
    zone.txt("s.test", "v=spf1 include:broken.test -all")
    zone.servfail("broken.test")
    assert (await spf(dns, "s.test"))[0] == "temperror"


async def test_a_mx_include_redirect(dns: DnsServer, zone: Zone) -> None:
    zone.a("s.test", "192.0.2.10")
    zone.txt("s.test", "v=spf1 a -all")
    assert (await spf(dns, "s.test"))[0] == "pass"
    zone.mx("m.test", (10, "mx.m.test"))
    zone.a("mx.m.test", "192.0.2.99")
    zone.txt("m.test", "v=spf1 mx/24 -all")
    assert (await spf(dns, "m.test"))[0] == "pass"
    assert (await spf(dns, "m.test", ip="192.0.3.1"))[0] == "fail"
    zone.txt("i.test", "v=spf1 include:s.test -all")
    assert (await spf(dns, "i.test"))[0] == "pass"
    zone.txt("r.test", "v=spf1 redirect=m.test")
    assert (await spf(dns, "r.test"))[0] == "pass"
    zone.txt("bad.test", "v=spf1 include:nothing.test -all")
    assert (await spf(dns, "bad.test"))[0] == "permerror"  # included domain has no record


async def test_more_than_ten_lookups_is_a_permerror(dns: DnsServer, zone: Zone) -> None:
    for i in range(12):
        zone.txt(f"l{i}.test", f"v=spf1 include:l{i + 1}.test -all")
    zone.txt("l12.test", "v=spf1 +all")
    result, why = await spf(dns, "l0.test")
    assert result == "permerror" and "10 DNS lookups" in why
    zone.txt("ok.test", "v=spf1 include:l4.test -all")  # 8 includes deep: within the limit
    assert (await spf(dns, "ok.test"))[0] == "pass"


async def test_more_than_two_void_lookups_is_a_permerror(dns: DnsServer, zone: Zone) -> None:
    zone.txt("v.test", "v=spf1 a:n1.test a:n2.test a:n3.test -all")
    result, why = await spf(dns, "v.test")
    assert result == "permerror" and "void" in why
    zone.txt("v2.test", "v=spf1 a:n1.test a:n2.test -all")
    assert (await spf(dns, "v2.test"))[0] == "fail"


async def test_macros(dns: DnsServer, zone: Zone) -> None:
    # RFC 7208 §7.4: %{ir} is the reversed IP, %{l} the local part, %{d2} the last two labels.
    zone.a("10.2.0.192.john.allow.s.test", "127.0.0.2")
    zone.txt("mac.s.test", "v=spf1 exists:%{ir}.%{l}.allow.%{d2} -all")
    assert (await spf(dns, "mac.s.test", sender="john@mac.s.test"))[0] == "pass"
    assert (await spf(dns, "mac.s.test", sender="jane@mac.s.test"))[0] == "fail"
    zone.txt("badmacro.test", "v=spf1 exists:%{q}.x.test -all")
    assert (await spf(dns, "badmacro.test"))[0] == "permerror"


async def test_ptr(dns: DnsServer, zone: Zone) -> None:
    zone.ptr("192.0.2.10", "host.p.test")
    zone.a("host.p.test", "192.0.2.10")
    zone.txt("p.test", "v=spf1 ptr -all")
    assert (await spf(dns, "p.test"))[0] == "pass"
    assert (await spf(dns, "p.test", ip="192.0.2.11"))[0] == "fail"


# -- at RCPT, through the server ---------------------------------------------------------


def _rcpt(port: int, sender: str, rcpts: list[str]) -> dict[str, tuple[int, str]]:
    out = {}
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
        s.ehlo("client.sender.test")
        s.mail(sender)
        for r in rcpts:
            code, text = s.rcpt(r)
            out[r] = (code, text.decode())
        s.rset()
    return out


async def test_spf_fail_rejected_at_rcpt_where_the_domain_says_so(
    tmp_path: Path, dns: DnsServer, zone: Zone
) -> None:
    zone.txt("sender.test", "v=spf1 ip4:192.0.2.1 -all")
    site = trust_site(
        tmp_path, dns, domains={"example.org": {"authentication": {"spf_fail": "reject"}}}
    )
    async with running(site, tmp_path / "data") as server:
        got = await asyncio.to_thread(
            _rcpt,
            server.port("smtp"),
            "sam@sender.test",
            ["alice@example.test", "alice@example.org"],
        )
    assert got["alice@example.test"][0] == 250  # site default: mark
    assert got["alice@example.org"] == (
        550,
        replies.S550_SPF_FAIL.format(domain="sender.test")[4:],
    )


async def test_spf_temperror_is_451_when_it_decides(
    tmp_path: Path, dns: DnsServer, zone: Zone
) -> None:
    zone.servfail("sender.test")
    site = trust_site(tmp_path, dns, auth={"spf_fail": "reject"})
    async with running(site, tmp_path / "data") as server:
        got = await asyncio.to_thread(
            _rcpt, server.port("smtp"), "sam@sender.test", ["alice@example.test"]
        )
    assert got["alice@example.test"] == (451, replies.S451_SPF_TEMPERROR[4:])


async def test_spf_fail_marked_by_default(tmp_path: Path, dns: DnsServer, zone: Zone) -> None:
    zone.txt("sender.test", "v=spf1 ip4:192.0.2.1 -all")
    site = trust_site(tmp_path, dns)

    def send(port: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
            s.sendmail("sam@sender.test", ["alice@example.test"], mail())

    async with running(site, tmp_path / "data") as server:
        await asyncio.to_thread(send, server.port("smtp"))
        await wait_for(lambda: maildir_files(tmp_path / "data", "example", "alice"))
    (path,) = maildir_files(tmp_path / "data", "example", "alice")
    assert b"spf=fail" in path.read_bytes()


async def test_answers_are_cached_per_ttl(tmp_path: Path, dns: DnsServer, zone: Zone) -> None:
    zone.txt("sender.test", "v=spf1 ip4:127.0.0.1 -all")
    zone.txt("_dmarc.sender.test", "v=DMARC1; p=none")
    site = trust_site(tmp_path, dns)

    def send(port: int, n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
            for i in range(n):
                s.sendmail("sam@sender.test", ["alice@example.test"], mail(subject=f"m{i}"))

    async with running(site, tmp_path / "data") as server:
        await asyncio.to_thread(send, server.port("smtp"), 5)
        await wait_for(lambda: len(maildir_files(tmp_path / "data", "example", "alice")) == 5)
    assert zone.asked("sender.test") == ["TXT"]
    assert zone.asked("_dmarc.sender.test") == ["TXT"]
