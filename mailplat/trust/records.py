"""The DNS an admin must publish for a site, and whether DNS already answers it.

Input: a SiteConfig and a Resolver. Output: wanted() lists the records, per
hosted domain and for the server itself, each with what it is for:
- MX -> server.host_name (preference 20 for a domain we are backup MX of);
- SPF `v=spf1 mx [ip4:/ip6: of delivery.bind_ip and public smtp binds] -all`;
- DKIM TXT per declared selector, from the key file (missing key: said so);
- DMARC `v=DMARC1; p=<dmarc.policy>[; rua=mailto:<dmarc.rua>]`, p=none to start;
- MTA-STS TXT and the policy file, when server.mta_sts is set;
- SRV for mail clients (RFC 6186, RFC 8314) for the enabled listeners;
- the host name's address, and the PTR each of its addresses needs.
check() asks DNS for each through the site's resolver and marks it present,
missing, different (DNS has something else) or unknown (DNS failed).
Nothing here prints; cli/dns.py renders the result as text or JSON.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from dataclasses import dataclass, field

from mailplat.config.dkimkeys import KeyProblem, declared_keys, load_key
from mailplat.config.load import SiteConfig
from mailplat.config.models.base import split_host_port
from mailplat.dns.resolver import DnsTemporary, Resolver
from mailplat.trust.dkim import public_record

PRESENT, MISSING, DIFFERENT, UNKNOWN = "present", "missing", "different", "unknown"


@dataclass(frozen=True, slots=True)
class Wanted:
    domain: str  # the hosted domain it is for ("" for the server itself)
    name: str
    rtype: str  # MX TXT SRV A PTR
    value: str
    purpose: str
    kind: str  # how DNS answers are compared: mx spf dkim dmarc mta-sts srv a ptr
    note: str = ""  # e.g. the key file is missing


@dataclass(frozen=True, slots=True)
class Checked:
    wanted: Wanted
    status: str
    found: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        w = self.wanted
        return {
            "domain": w.domain,
            "name": w.name,
            "type": w.rtype,
            "value": w.value,
            "purpose": w.purpose,
            "status": self.status,
            "found": list(self.found),
            "note": w.note,
        }


@dataclass
class Report:
    records: list[Checked] = field(default_factory=list)
    mta_sts_policy: str = ""  # the policy file text, when MTA-STS is published

    @property
    def complete(self) -> bool:
        return all(c.status == PRESENT for c in self.records)


def _public_ips(config: SiteConfig) -> list[str]:
    """The server's own outbound addresses that SPF should name (no loopback, no wildcards)."""
    site = config.site
    out: list[str] = []
    candidates = [site.delivery.bind_ip] if site.delivery.bind_ip else []
    candidates += [split_host_port(b, 25)[0] for b in site.listeners.smtp.bind]
    for text in candidates:
        try:
            ip = ipaddress.ip_address(text or "")
        except ValueError:
            continue
        if ip.is_loopback or ip.is_unspecified or str(ip) in out:
            continue
        out.append(str(ip))
    return out


def spf_value(config: SiteConfig) -> str:
    terms = ["v=spf1", "mx"]
    for ip in _public_ips(config):
        terms.append(("ip6:" if ":" in ip else "ip4:") + ip)
    return " ".join([*terms, "-all"])


def mta_sts_policy(config: SiteConfig) -> str:
    """RFC 8461 §3.2: the policy file each domain serves over HTTPS."""
    publish = config.site.server.mta_sts
    assert publish is not None
    return (
        "version: STSv1\n"
        f"mode: {publish.mode}\n"
        f"mx: {config.site.server.host_name}\n"
        f"max_age: {publish.max_age_days * 86400}\n"
    )


def _srv(config: SiteConfig, domain: str) -> list[Wanted]:
    site = config.site
    host = site.server.host_name
    out: list[Wanted] = []
    services = (
        ("_submissions", site.listeners.smtps, 465, "mail clients send over implicit TLS"),
        ("_submission", site.listeners.submission, 587, "mail clients send (STARTTLS)"),
        ("_pop3s", site.listeners.pop3s, 995, "mail clients read over TLS (POP3S)"),
        ("_pop3", site.listeners.pop3, 110, "mail clients read (POP3, STARTTLS)"),
    )
    for label, listener, default, purpose in services:
        if not listener.enabled:
            continue
        port = default
        if listener.bind:
            port = split_host_port(listener.bind[0], default)[1] or default
        value = f"0 1 {port} {host}."
        out.append(
            Wanted(domain, f"{label}._tcp.{domain}", "SRV", value, purpose + " (RFC 6186)", "srv")
        )
    return out


def wanted(config: SiteConfig) -> list[Wanted]:
    """Every record the site needs in DNS, hosted domains first, then the server's own."""
    site = config.site
    host = site.server.host_name
    out: list[Wanted] = []
    keys = declared_keys(config)
    for po in config.postoffices.values():
        for domain, dom in po.domains.items():
            if dom.disabled:
                continue
            backup = dom.smart_host is not None
            pref = 20 if backup else 10
            out.append(
                Wanted(
                    domain,
                    domain,
                    "MX",
                    f"{pref} {host}.",
                    "backup MX: mail waits here when the primary is down"
                    if backup
                    else "where other servers deliver mail for the domain",
                    "mx",
                )
            )
            if backup:
                continue
            out.append(
                Wanted(
                    domain,
                    domain,
                    "TXT",
                    spf_value(config),
                    "SPF: only this server (the MX hosts) may send the domain's mail",
                    "spf",
                )
            )
            for key in (k for k in keys if k.domain == domain):
                try:
                    value, note = public_record(load_key(key.path, key.algorithm)), ""
                except KeyProblem as exc:
                    value, note = "", f"{exc}; run `mailplat dkim keygen {config.root}`"
                state = "signs" if key.sign else "published only, not signing yet"
                out.append(
                    Wanted(
                        domain,
                        key.dns_name,
                        "TXT",
                        value,
                        f"DKIM public key of selector {key.selector} ({key.algorithm}, {state})",
                        "dkim",
                        note,
                    )
                )
            dmarc_value = f"v=DMARC1; p={dom.dmarc.policy}"
            if dom.dmarc.rua:
                dmarc_value += f"; rua=mailto:{dom.dmarc.rua}"
            out.append(
                Wanted(
                    domain,
                    f"_dmarc.{domain}",
                    "TXT",
                    dmarc_value,
                    "DMARC: what receivers do with mail failing SPF and DKIM"
                    + (
                        "; p=none only watches: raise it once reports look right"
                        if dom.dmarc.policy == "none"
                        else ""
                    ),
                    "dmarc",
                )
            )
            if site.server.mta_sts is not None:
                policy_id = hashlib.sha256(mta_sts_policy(config).encode()).hexdigest()[:20]
                out.append(
                    Wanted(
                        domain,
                        f"_mta-sts.{domain}",
                        "TXT",
                        f"v=STSv1; id={policy_id}",
                        f"MTA-STS: senders fetch https://mta-sts.{domain}/.well-known/mta-sts.txt",
                        "mta-sts",
                    )
                )
            out += _srv(config, domain)
    out.append(Wanted("", host, "A", "(this server's address)", "the MX host must resolve", "a"))
    return out


def _strip(text: str) -> str:
    return text.strip().rstrip(".").lower()


def _tags(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        name, _, value = part.partition("=")
        out[name.strip().lower()] = "".join(value.split())
    return out


def _judge(w: Wanted, found: list[str]) -> str:
    if w.kind == "mx":
        hosts = [_strip(f.split()[-1]) for f in found if f.split()]
        if not hosts:
            return MISSING
        return PRESENT if _strip(w.value.split()[-1]) in hosts else DIFFERENT
    if w.kind in ("spf", "dkim", "dmarc", "mta-sts"):
        prefix = {"spf": "v=spf1", "dkim": "", "dmarc": "v=dmarc1", "mta-sts": "v=stsv1"}[w.kind]
        mine = [f for f in found if f.replace(" ", "").lower().startswith(prefix)]
        if not mine:
            return MISSING
        if not w.value:
            return DIFFERENT  # published, but we cannot tell what it should be
        if w.kind == "spf":
            return PRESENT if " ".join(mine[0].split()) == w.value else DIFFERENT
        want = _tags(w.value)
        keys = {"dkim": ("p",), "dmarc": ("p", "rua"), "mta-sts": ("id",)}[w.kind]
        ok = any(all(_tags(m).get(k, "") == want.get(k, "") for k in keys) for m in mine)
        return PRESENT if ok else DIFFERENT
    if w.kind == "srv":
        if not found:
            return MISSING
        _, _, port, target = w.value.split()
        for text in found:
            parts = text.split()
            if len(parts) == 4 and parts[2] == port and _strip(parts[3]) == _strip(target):
                return PRESENT
        return DIFFERENT
    if w.kind == "ptr":
        if not found:
            return MISSING
        return PRESENT if _strip(w.value) in {_strip(f) for f in found} else DIFFERENT
    return PRESENT if found else MISSING  # an address


async def _ask(resolver: Resolver, w: Wanted) -> Checked:
    try:
        if w.rtype == "TXT":
            found = await resolver.txt(w.name)
        elif w.kind == "a":
            found = await resolver.addresses(w.name)
        else:
            found = await resolver.records(w.name, w.rtype)
    except DnsTemporary as exc:
        return Checked(w, UNKNOWN, (str(exc),))
    return Checked(w, _judge(w, found), tuple(found))


async def check(config: SiteConfig, resolver: Resolver) -> Report:
    """Every wanted record with what DNS answers now; the PTRs of the host's addresses too."""
    records = list(await asyncio.gather(*(_ask(resolver, w) for w in wanted(config))))
    host = config.site.server.host_name
    addresses = next((c.found for c in records if c.wanted.kind == "a" and c.status == PRESENT), ())
    ptrs = [
        Wanted(
            "",
            ipaddress.ip_address(ip).reverse_pointer,
            "PTR",
            f"{host}.",
            f"reverse DNS of {ip}, the server's address: receivers distrust mail without it",
            "ptr",
        )
        for ip in addresses
    ]
    if config.site.delivery.bind_ip and config.site.delivery.bind_ip not in addresses:
        ip = config.site.delivery.bind_ip
        ptrs.append(
            Wanted(
                "",
                ipaddress.ip_address(ip).reverse_pointer,
                "PTR",
                f"{host}.",
                f"reverse DNS of {ip} (delivery.bind_ip, the outbound address)",
                "ptr",
            )
        )
    records += await asyncio.gather(*(_ask(resolver, w) for w in ptrs))
    policy = mta_sts_policy(config) if config.site.server.mta_sts is not None else ""
    return Report(list(records), policy)
