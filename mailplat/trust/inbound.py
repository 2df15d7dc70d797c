"""Judging mail from other servers: SPF at RCPT, DKIM + DMARC + ARC at DATA, and the decision.

Input: the client's facts (IP, HELO, MAIL FROM), the message, the site's
`authentication` settings with each recipient domain's overrides, and a
Resolver (cached per TTL). Output:
- check_spf(): SPF for the MAIL FROM identity (postmaster@HELO for the null
  sender) and the HELO identity (RFC 7208 §2.3, §2.4);
- spf_refusal(): the RCPT reply for a recipient whose domain rejects SPF
  fail (550 5.7.23), or 451 4.7.24 when SPF could not be checked and the
  answer matters; None otherwise;
- check_message(): the message to spool (our Authentication-Results on top,
  forged ones claiming our host name removed, the subject tagged when
  quarantine says so), whether it goes to Junk, or the refusal: 550 5.7.1
  for DMARC p=reject (when every recipient domain honours it) and for a
  forged From of one of our own domains; 451 4.7.5 when DNS failed where the
  answer decides, and when the time budget runs out. Never a 5xx on a
  temporary failure.
A trusted forwarder's valid ARC seal overrides a DMARC failure (and the
spoof rule): a mailing list's subject tag breaks the author's DKIM.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mailplat.config.models.postoffice import InboundOverride
from mailplat.config.models.site import Authentication
from mailplat.core import replies
from mailplat.dns.resolver import Resolver
from mailplat.trust import arc, authresults, dkim, dmarc, spf
from mailplat.trust.fields import Field, from_domains, split

log = logging.getLogger("mailplat.trust")


@dataclass(frozen=True, slots=True)
class Rules:
    """The decisions for mail to one recipient domain (site settings, then its overrides)."""

    spf_fail: str = "mark"
    dmarc_reject: str = "reject"
    dmarc_quarantine: str = "junk"


def warm_up() -> None:
    """Load the Public Suffix List now (a quarter second), not on the first message."""
    dmarc.organizational_domain("warm-up.example.com")


def rules_for(auth: Authentication, override: InboundOverride | None) -> Rules:
    if override is None:
        return Rules(auth.spf_fail, auth.dmarc_reject, auth.dmarc_quarantine)
    return Rules(
        override.spf_fail or auth.spf_fail,
        override.dmarc_reject or auth.dmarc_reject,
        override.dmarc_quarantine or auth.dmarc_quarantine,
    )


# -- SPF, once per transaction (at the first local RCPT) ---------------------------------


@dataclass(frozen=True, slots=True)
class SpfVerdict:
    mailfrom: spf.Result | None  # None for the null sender
    helo: spf.Result | None  # None when HELO is no domain name
    sender: str  # MAIL FROM as given ("" for <>)

    @property
    def effective(self) -> spf.Result | None:
        """The identity DMARC and the decision use: MAIL FROM, else HELO (RFC 7489 §4.1)."""
        return self.mailfrom if self.mailfrom is not None else self.helo


def _helo_domain(helo: str) -> str | None:
    name = helo.strip().rstrip(".").lower()
    if not name or name.startswith("[") or "." not in name:
        return None
    return name


async def check_spf(
    resolver: Resolver, ip: str, sender: str, helo: str, budget: float
) -> SpfVerdict:
    """SPF of both identities; a check still running when the budget ends is a temperror.

    One after the other: with answers cached (the usual case) that is cheaper
    than two tasks, and a miss costs a round trip or two within the budget.
    """
    helo_domain = _helo_domain(helo)
    mailfrom: spf.Result | None = None
    helo_result: spf.Result | None = None
    current = ""
    try:
        async with asyncio.timeout(budget):
            if sender:
                current = sender.rsplit("@", 1)[-1]
                mailfrom = await spf.check_host(resolver, ip, current, sender, helo)
            if helo_domain is not None:
                # RFC 7208 §2.4: the null sender's MAIL FROM identity is postmaster@HELO.
                current = helo_domain
                helo_result = await spf.check_host(
                    resolver, ip, helo_domain, f"postmaster@{helo_domain}", helo
                )
    except TimeoutError:
        late = spf.Result("temperror", f"SPF of {current} took over {budget:g}s", current)
        if sender and mailfrom is None:
            mailfrom = late
        elif helo_domain is not None:
            helo_result = late
    return SpfVerdict(mailfrom, helo_result, sender)


def spf_refusal(verdict: SpfVerdict, rules: Rules) -> str | None:
    """The RCPT reply when this recipient's domain refuses what SPF found."""
    found = verdict.effective
    if found is None or rules.spf_fail != "reject":
        return None
    if found.result == "fail":
        return replies.S550_SPF_FAIL.format(domain=found.domain)
    if found.result == "temperror":
        return replies.S451_SPF_TEMPERROR  # it might have been a fail: ask again later
    return None


# -- the message, at DATA -----------------------------------------------------------------


@dataclass
class Verdict:
    """What DATA does with the message."""

    reply: str | None  # a refusal (5xx or 4xx); None to accept
    data: bytes  # the message to spool when accepted
    junk: str = ""  # why it goes into the Junk folder ("" = the inbox)
    summary: dict[str, str] = field(default_factory=dict)  # for the log line


@dataclass(frozen=True, slots=True)
class Client:
    """The facts of the session that matter to the checks."""

    ip: str
    helo: str
    sender: str
    privileged: bool  # relay.privileged_ips: trusted to send for our domains


async def check_message(
    *,
    resolver: Resolver,
    data: bytes,
    client: Client,
    spf_verdict: SpfVerdict | None,
    auth: Authentication,
    rules: list[Rules],
    host_name: str,
    is_local: Callable[[str], bool],
) -> Verdict:
    """DKIM, ARC and DMARC, then the decision; never longer than the time budget."""
    try:
        async with asyncio.timeout(auth.time_budget_seconds):
            return await _check(
                resolver, data, client, spf_verdict, auth, rules, host_name, is_local
            )
    except TimeoutError:
        log.info(
            "trust budget-exceeded peer=%s from=%s seconds=%g",
            client.ip,
            client.sender or "<>",
            auth.time_budget_seconds,
        )
        return Verdict(replies.S451_AUTH_TEMPERROR, data, summary={"budget": "exceeded"})


async def _check(
    resolver: Resolver,
    data: bytes,
    client: Client,
    spf_verdict: SpfVerdict | None,
    auth: Authentication,
    rules: list[Rules],
    host_name: str,
    is_local: Callable[[str], bool],
) -> Verdict:
    if spf_verdict is None:
        spf_verdict = await check_spf(
            resolver, client.ip, client.sender, client.helo, auth.time_budget_seconds
        )
    message = split(data)
    author = dmarc.single_domain(from_domains(message))
    keys = dkim.KeyCache()
    dkim_task = dkim.verify(message, resolver, auth.min_rsa_bits, keys)
    arc_task = arc.verify(data, resolver, auth.min_rsa_bits, keys, message)
    # In turn, not as tasks: the answers are nearly always cached (see check_spf).
    dkim_results = await dkim_task
    arc_result = await arc_task
    if isinstance(author, str):
        found = await dmarc.lookup(resolver, author)
        dmarc_result = dmarc.judge(author, found, spf_verdict.effective, dkim_results)
    else:
        dmarc_result = author
    trusted_arc = arc_result.result == "pass" and arc_result.sealer in auth.trusted_arc_sealers
    authentic = _authentic(dmarc_result.from_domain, spf_verdict.effective, dkim_results)
    reply, junk, tag, note = _decide(
        dmarc_result, authentic, trusted_arc, arc_result, auth, rules, client, is_local
    )
    summary = {
        "spf": spf_verdict.effective.result if spf_verdict.effective else "none",
        "dkim": ",".join(f"{r.result}:{r.domain}" for r in dkim_results) or "none",
        "dmarc": f"{dmarc_result.result}:{dmarc_result.from_domain}",
        "arc": arc_result.result,
    }
    if reply is not None:
        return Verdict(reply, data, summary=summary)
    field_bytes = authresults.header(
        host_name,
        spf_mailfrom=spf_verdict.mailfrom,
        mailfrom=client.sender,
        spf_helo=spf_verdict.helo,
        helo=client.helo,
        dkim_results=dkim_results,
        dmarc_result=dmarc_result,
        arc_result=arc_result,
        note=note,
    )
    body = data
    if message.get_all("authentication-results"):
        body, _ = authresults.strip_ours(data, host_name, message)
    if tag:
        body = tag_subject(body, auth.quarantine_tag)
    return Verdict(None, field_bytes + body, junk=junk, summary=summary)


def _authentic(domain: str, spf_result: spf.Result | None, results: list[dkim.Result]) -> bool:
    """An SPF or DKIM pass aligned (relaxed) with the From domain, DMARC record or not."""
    if not domain:
        return False
    if any(r.passed and dmarc.aligned(r.domain, domain, "r") for r in results):
        return True
    return (
        spf_result is not None
        and spf_result.result == "pass"
        and dmarc.aligned(spf_result.domain, domain, "r")
    )


def _decide(
    result: dmarc.Result,
    authentic: bool,
    trusted_arc: bool,
    arc_result: arc.Result,
    auth: Authentication,
    rules: list[Rules],
    client: Client,
    is_local: Callable[[str], bool],
) -> tuple[str | None, str, bool, str]:
    """(refusal, junk reason, tag the subject?, note for the header) for a DMARC result."""
    domain = result.from_domain
    if result.result == "pass":
        return None, "", False, ""
    if result.result == "temperror":
        return replies.S451_AUTH_TEMPERROR, "", False, ""
    if trusted_arc and result.result == "fail":
        return None, "", False, f"overridden: ARC sealed by {arc_result.sealer}"
    spoof = (
        auth.refuse_local_spoof
        and bool(domain)
        and is_local(domain)
        and not client.privileged
        and not authentic
    )
    if spoof:
        if trusted_arc:
            return None, "", False, f"local From accepted: ARC sealed by {arc_result.sealer}"
        return replies.S550_LOCAL_SPOOF.format(domain=domain), "", False, ""
    if result.result != "fail":
        return None, "", False, ""
    policy = result.policy
    if policy == "reject":
        if rules and all(r.dmarc_reject == "reject" for r in rules):
            return replies.S550_DMARC_REJECT.format(domain=domain, why=result.reason), "", False, ""
        policy = "quarantine"
    if policy == "quarantine":
        actions = {r.dmarc_quarantine for r in rules} or {auth.dmarc_quarantine}
        junk = bool(actions & {"junk", "both"})
        tag = bool(actions & {"tag", "both"})
        why = f"DMARC {result.published} of {domain}"
        return None, why if junk else "", tag, "quarantined"
    return None, "", False, ""


def tag_subject(data: bytes, tag: str) -> bytes:
    """The message with `tag` before its subject (added once; a Subject made when none)."""
    message = split(data)
    subjects = message.get_all("subject")
    prefix = tag.encode("utf-8")
    if not subjects:
        new = Field("subject", b"Subject: " + prefix + b"\r\n")
        return type(message)((*message.fields, new), message.body, True).to_bytes()
    first = subjects[0]
    if first.value.encode("utf-8", "replace").startswith(prefix):
        return data
    name, _, value = first.raw.partition(b":")
    tagged = Field("subject", name + b": " + prefix + b" " + value.lstrip(b" "))
    fields = tuple(tagged if f is first else f for f in message.fields)
    return type(message)(fields, message.body, message.has_separator).to_bytes()
