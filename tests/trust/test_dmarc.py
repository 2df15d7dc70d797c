"""DMARC policy discovery and judgement over the real DNS server (RFC 7489 §6.6)."""

from __future__ import annotations

import random

from mailplat.dns.resolver import Resolver
from mailplat.trust import dkim, dmarc, spf
from tests.support_dns import DnsServer, Zone

NO_SPF = spf.Result("none", "", "")


async def judge(
    dns: DnsServer,
    from_domains: list[str],
    spf_result: spf.Result = NO_SPF,
    dkim_results: list[dkim.Result] | None = None,
    seed: int = 1,
) -> dmarc.Result:
    return await dmarc.evaluate(
        Resolver([dns.address], timeout=1.0),
        from_domains,
        spf_result,
        dkim_results or [],
        random.Random(seed),
    )


async def test_subdomain_falls_back_to_the_organizational_record_and_its_sp(
    dns: DnsServer, zone: Zone
) -> None:
    zone.txt("_dmarc.corp.test", "v=DMARC1; p=none; sp=reject")
    result = await judge(dns, ["news.corp.test"])
    assert (result.result, result.policy, result.published) == ("fail", "reject", "reject")
    assert result.record is not None and result.record.domain == "corp.test"
    own = await judge(dns, ["corp.test"])
    assert own.policy == "none"


async def test_public_suffix_list_gives_the_organizational_domain(
    dns: DnsServer, zone: Zone
) -> None:
    assert dmarc.organizational_domain("mail.example.co.uk") == "example.co.uk"
    zone.txt("_dmarc.example.co.uk", "v=DMARC1; p=quarantine")
    assert (await judge(dns, ["a.b.example.co.uk"])).policy == "quarantine"
    # Relaxed alignment within one organization; never across a public suffix.
    assert dmarc.aligned("a.example.co.uk", "b.example.co.uk", "r")
    assert not dmarc.aligned("example.co.uk", "other.co.uk", "r")


async def test_pct_samples_the_policy(dns: DnsServer, zone: Zone) -> None:
    zone.txt("_dmarc.half.test", "v=DMARC1; p=reject; pct=0")
    result = await judge(dns, ["half.test"])
    assert (result.result, result.published, result.policy) == ("fail", "reject", "quarantine")


async def test_bad_records_are_no_policy(dns: DnsServer, zone: Zone) -> None:
    zone.txt("_dmarc.two.test", "v=DMARC1; p=reject")
    zone.txt("_dmarc.two.test", "v=DMARC1; p=none")
    assert (await judge(dns, ["two.test"])).result == "none"
    zone.txt("_dmarc.bad.test", "v=DMARC1; p=sometimes")
    assert (await judge(dns, ["bad.test"])).result == "none"
    zone.txt("_dmarc.rua.test", "v=DMARC1; p=oops; rua=mailto:r@rua.test")
    assert (await judge(dns, ["rua.test"])).published == "none"  # §6.6.3


async def test_several_from_domains_and_temperror(dns: DnsServer, zone: Zone) -> None:
    assert (await judge(dns, ["a.test", "b.test"])).result == "permerror"
    assert (await judge(dns, [])).result == "permerror"
    zone.servfail("_dmarc.flaky.test")
    assert (await judge(dns, ["flaky.test"])).result == "temperror"
    # A DKIM check that could not run, on an enforcing domain: no verdict yet.
    zone.txt("_dmarc.strict.test", "v=DMARC1; p=reject")
    unknown = [dkim.Result("temperror", "strict.test", "s1")]
    assert (await judge(dns, ["strict.test"], dkim_results=unknown)).result == "temperror"
