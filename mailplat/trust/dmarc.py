"""DMARC (RFC 7489): does the From domain stand behind this message, and what does it ask?

Input: the From domain, the SPF result and the domain it authenticated, the
DKIM results, a Resolver. Output: a Result: pass (an aligned SPF or DKIM
pass), fail (with the policy to apply: none, quarantine or reject, after
pct sampling), none (no policy published), temperror (DNS could not tell,
or a result that might have passed was a temperror), permerror.

Policy discovery (§6.6.3): `_dmarc.<from domain>`, else the organizational
domain's record, whose sp= then applies. Alignment (§3.1): strict means the
same domain; relaxed means the same organizational domain, from the Public
Suffix List that the `publicsuffixlist` package ships (never downloaded at
run time).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from publicsuffixlist import PublicSuffixList

from mailplat.dns.resolver import DnsTemporary, Resolver
from mailplat.trust import dkim, spf

POLICIES = ("none", "quarantine", "reject")


@functools.lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the copy bundled with the package


@functools.lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the registrable domain (one label below its public suffix)."""
    domain = domain.rstrip(".").lower()
    return _psl().privatesuffix(domain) or domain


def aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.rstrip(".").lower(), b.rstrip(".").lower()
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


@dataclass(frozen=True, slots=True)
class Record:
    """A published DMARC policy (RFC 7489 §6.3)."""

    domain: str  # where it was found
    p: str
    sp: str
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    result: str  # pass | fail | none | temperror | permerror
    from_domain: str
    policy: str = "none"  # what a fail asks for, after pct
    published: str = ""  # p= (or sp=) as published
    reason: str = ""
    record: Record | None = None


def parse(text: str, domain: str) -> Record | None:
    """A DMARC record, or None when it is not one that can be used."""
    tags: dict[str, str] = {}
    for i, part in enumerate(text.split(";")):
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep:
            if name:
                return None
            continue
        if i == 0 and (name != "v" or value != "DMARC1"):
            return None
        tags.setdefault(name, value)
    p = tags.get("p", "").lower()
    if p not in POLICIES:
        # §6.6.3: a record with rua= but a bad p= is read as p=none.
        if "rua" not in tags:
            return None
        p = "none"
    sp = tags.get("sp", p).lower()
    if sp not in POLICIES:
        sp = p
    pct_text = tags.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() else 100
    return Record(
        domain=domain,
        p=p,
        sp=sp,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=max(0, min(100, pct)),
        rua=tags.get("rua", ""),
    )


async def _lookup(resolver: Resolver, domain: str) -> Record | None:
    texts = await resolver.txt(f"_dmarc.{domain}")
    found = [t for t in texts if t.replace(" ", "").startswith("v=DMARC1")]
    if len(found) != 1:
        return None  # §6.6.3: none, or several, is no policy
    return parse(found[0], domain)


async def discover(resolver: Resolver, from_domain: str) -> Record | None:
    """The policy for a From domain: its own record, else its organizational domain's."""
    record = await _lookup(resolver, from_domain)
    if record is not None:
        return record
    org = organizational_domain(from_domain)
    if org != from_domain:
        return await _lookup(resolver, org)
    return None


Lookup = Record | None | DnsTemporary  # a discovery's outcome, failure included


async def lookup(resolver: Resolver, from_domain: str) -> Lookup:
    """discover(), with a temporary DNS failure as a value (to run beside other checks)."""
    try:
        return await discover(resolver, from_domain)
    except DnsTemporary as exc:
        return exc


def single_domain(from_domains: list[str]) -> str | Result:
    """The one From domain, or the permerror of a message without exactly one (§6.6.1)."""
    domains = sorted(set(from_domains))
    if not domains:
        return Result("permerror", "", reason="no From address with a domain")
    if len(domains) > 1:
        return Result("permerror", domains[0], reason="From names several domains")
    return domains[0]


def judge(
    domain: str,
    found: Lookup,
    spf_result: spf.Result | None,
    dkim_results: list[dkim.Result],
    rng: random.Random | None = None,
) -> Result:
    """RFC 7489 §6.6.2: the result for a From domain given its policy and the checks."""
    if isinstance(found, DnsTemporary):
        return Result("temperror", domain, reason=str(found))
    record = found
    if record is None:
        return Result("none", domain, reason="no DMARC record")
    published = record.p if record.domain == domain else record.sp
    spf_ok = (
        spf_result is not None
        and spf_result.result == "pass"
        and aligned(spf_result.domain, domain, record.aspf)
    )
    dkim_ok = [r for r in dkim_results if r.passed and aligned(r.domain, domain, record.adkim)]
    if dkim_ok:
        return Result(
            "pass", domain, "none", published, f"aligned DKIM {dkim_ok[0].domain}", record
        )
    if spf_ok and spf_result is not None:
        return Result("pass", domain, "none", published, f"aligned SPF {spf_result.domain}", record)
    # A check that could not run might have passed: say so rather than fail it.
    maybe = [
        r
        for r in dkim_results
        if r.result == "temperror" and aligned(r.domain, domain, record.adkim)
    ]
    spf_unknown = spf_result is not None and spf_result.result == "temperror"
    if (maybe or spf_unknown) and published != "none":
        return Result("temperror", domain, "none", published, "DNS failed for a check", record)
    policy = published
    if record.pct < 100 and (rng or random).random() * 100 >= record.pct:
        # §6.6.4: outside the sample, the next milder policy applies.
        policy = POLICIES[max(0, POLICIES.index(policy) - 1)]
    why = "no aligned DKIM signature or SPF pass"
    return Result("fail", domain, policy, published, why, record)


async def evaluate(
    resolver: Resolver,
    from_domains: list[str],
    spf_result: spf.Result | None,
    dkim_results: list[dkim.Result],
    rng: random.Random | None = None,
) -> Result:
    """The DMARC result of a message, its From domains as parsed from the header."""
    domain = single_domain(from_domains)
    if isinstance(domain, Result):
        return domain
    return judge(domain, await lookup(resolver, domain), spf_result, dkim_results, rng)
