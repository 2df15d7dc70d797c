"""DNS for the whole server: where mail goes (MX, addresses), and the records trust needs.

Input: a domain (A-label, or a literal such as `[192.0.2.1]`) and the site's
DNS servers (`host[:port]`; none means the system resolver). Output: the
host names to try, in MX preference order with equal preferences shuffled
(RFC 5321 §5.1), then each host's A and AAAA addresses. Failures are typed so
the caller can tell a bounce from a retry:
- NXDOMAIN, a null MX (RFC 7505 `0 .`), or no MX and no address at all ->
  DnsPermanent (the message bounces now);
- SERVFAIL, REFUSED, a timeout, no server answering -> DnsTemporary (retry).
A domain without MX records is its own mail host (the implicit MX of
RFC 5321 §5.1). A literal goes straight to its IP, no DNS involved.

For SPF, DKIM, DMARC, ARC, MTA-STS and DANE (mailplat.trust): txt(),
records() and tlsa(). Those say "nothing there" as an empty list, whether
the name does not exist or has no such record, and raise DnsTemporary when
DNS cannot tell now. tlsa() also says whether the upstream resolver
validated the answer (the DNSSEC AD bit), which DANE requires.
A Resolver made with cache=True keeps the answers of those three, positive
(for their TTL) and negative (a minute), so the same sender's records are
not asked for again per message; MX, address, PTR and DNSBL lookups are
never cached here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from collections.abc import Hashable, Sequence
from itertools import groupby

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

from mailplat.config.models.base import split_host_port

MAX_CACHED = 50_000
NEGATIVE_TTL = 60.0


class DnsError(Exception):
    """A lookup failed; `status` is the RFC 3463 code a DSN or a log line uses."""

    temporary = False

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class DnsPermanent(DnsError):
    """The answer is final: the domain cannot receive mail."""


class DnsTemporary(DnsError):
    """The answer may change: try again later."""

    temporary = True


def literal_ip(text: str) -> str | None:
    """The IP of `[1.2.3.4]`, `[IPv6:...]` or a bare IP string, else None."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


class Resolver:
    """MX and address lookups against fixed servers or the system's."""

    def __init__(
        self,
        servers: Sequence[str] = (),
        timeout: float = 10.0,
        rng: random.Random | None = None,
        cache: bool = False,
    ) -> None:
        self.servers = list(servers)
        self.timeout = timeout
        self.rng = rng or random.Random()
        self.cache = cache
        # (name, type) -> (expires at, answer or None for "nothing there"); ours, not
        # dnspython's Cache, whose hit still costs a tenth of a millisecond.
        self._answers: dict[tuple[str, str], tuple[float, dns.resolver.Answer | None]] = {}
        # Results computed from cached answers (SPF), each kept until the earliest
        # expiry of the answers it rests on; owned by the callers, dropped with us.
        self.derived: dict[Hashable, tuple[float, object]] = {}
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._lock = asyncio.Lock()

    async def _get(self) -> dns.asyncresolver.Resolver:
        """Build the dnspython resolver on first use (server names need a lookup)."""
        async with self._lock:
            if self._resolver is not None:
                return self._resolver
            if self.servers:
                res = dns.asyncresolver.Resolver(configure=False)
                res.nameservers = [await _nameserver(s) for s in self.servers]
            else:
                # Reads /etc/resolv.conf: a small file, once per resolver.
                res = dns.asyncresolver.Resolver()
            # One overall budget per lookup: a slow server must turn into a
            # temporary failure, not a worker stuck for the remote timeout.
            res.lifetime = self.timeout
            res.timeout = self.timeout
            # RFC 6840 §5.7: ask a validating resolver to say whether it validated.
            res.flags = dns.flags.RD | dns.flags.AD
            self._resolver = res
            return res

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        """The answer, None for "name exists but has no such record"; raises DnsError."""
        res = await self._get()
        try:
            return await res.resolve(name, rdtype, search=False)
        except dns.resolver.NoAnswer:
            return None
        except dns.resolver.NXDOMAIN as exc:
            raise DnsPermanent(f"{name}: no such domain (NXDOMAIN)", "5.1.2") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTemporary(f"{name}: DNS servers failed (SERVFAIL)", "4.4.3") from exc
        except dns.exception.Timeout as exc:
            raise DnsTemporary(f"{name}: DNS lookup timed out", "4.4.3") from exc
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
            raise DnsPermanent(f"{name}: not a valid domain name", "5.1.2") from exc
        except dns.exception.DNSException as exc:
            raise DnsTemporary(f"{name}: DNS error: {exc}", "4.4.3") from exc

    async def records(self, name: str, rdtype: str) -> list[str]:
        """The records of a name as text ([] when there are none); raises DnsTemporary.

        A name that does not exist and a name without such records are both
        "nothing" here: SPF's void lookups and DMARC's discovery count them alike.
        """
        answer = await self._soft(name, rdtype)
        if answer is None:
            return []
        kind = dns.rdatatype.from_text(rdtype)
        return [r.to_text() for r in answer if r.rdtype == kind]

    async def txt(self, name: str) -> list[str]:
        """TXT records of a name, each one's strings joined (RFC 7208 §3.3); [] for none."""
        answer = await self._soft(name, "TXT")
        if answer is None:
            return []
        return [
            b"".join(r.strings).decode("utf-8", "replace")
            for r in answer
            if r.rdtype == dns.rdatatype.TXT
        ]

    async def tlsa(self, name: str) -> tuple[list[tuple[int, int, int, bytes]], bool]:
        """TLSA records (usage, selector, matching type, data) and whether they were validated.

        Only an answer with the AD bit from the upstream resolver counts as
        validated (RFC 7672 §2.1); DANE ignores records that are not.
        """
        answer = await self._soft(name, "TLSA")
        if answer is None:
            return [], False
        found = [
            (int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert))
            for r in answer
            if r.rdtype == dns.rdatatype.TLSA
        ]
        return found, bool(answer.response.flags & dns.flags.AD)

    async def validated(self, name: str, rdtype: str) -> bool:
        """True when the upstream resolver validated this RRset (AD bit); raises DnsTemporary."""
        answer = await self._soft(name, rdtype)
        return answer is not None and bool(answer.response.flags & dns.flags.AD)

    def cached_until(self, name: str, rdtype: str) -> float:
        """When the cached answer for (name, type) expires; 0 when none is cached."""
        hit = self._answers.get((name.lower(), rdtype))
        return hit[0] if hit is not None else 0.0

    async def _soft(self, name: str, rdtype: str) -> dns.resolver.Answer | None:
        key = (name.lower(), rdtype)
        if self.cache:
            hit = self._answers.get(key)
            if hit is not None and hit[0] > time.time():
                return hit[1]
        try:
            answer = await self._query(name, rdtype)
        except DnsPermanent:
            answer = None
        if self.cache:
            if len(self._answers) >= MAX_CACHED:
                self._answers.clear()  # crude, and rare: a flood of distinct names
            # A negative answer is kept briefly (RFC 2308 would take the SOA minimum).
            expires = answer.expiration if answer is not None else time.time() + NEGATIVE_TTL
            self._answers[key] = (expires, answer)
        return answer

    async def mx(self, domain: str) -> list[str]:
        """Hosts that receive mail for `domain`, best first; raises DnsError.

        Equal preferences come back in random order so load spreads over them.
        """
        ip = literal_ip(domain) if domain.startswith("[") else None
        if ip is not None:
            return [ip]
        answer = await self._query(domain, "MX")
        if answer is None:
            # RFC 5321 §5.1: no MX means the domain itself is the mail host,
            # provided it has an address.
            if not await self.addresses(domain):
                raise DnsPermanent(f"{domain}: no MX and no address record", "5.1.2")
            return [domain]
        records = sorted(
            ((int(r.preference), r.exchange) for r in answer if r.rdtype == dns.rdatatype.MX),
            key=lambda pair: pair[0],
        )
        real = [(pref, name) for pref, name in records if name != dns.name.root]
        if not real:
            # RFC 7505: `MX 0 .` says the domain accepts no mail at all.
            raise DnsPermanent(f"{domain}: domain accepts no mail (null MX)", "5.1.10")
        hosts: list[str] = []
        for _, group in groupby(real, key=lambda pair: pair[0]):
            names = [name.to_text(omit_final_dot=True).lower() for _, name in group]
            self.rng.shuffle(names)
            hosts += [n for n in names if n not in hosts]
        return hosts

    async def addresses(self, host: str) -> list[str]:
        """A then AAAA addresses of a host ([] when it has none); raises DnsTemporary.

        A host whose name does not exist is simply unusable, like one with no
        address: the next MX may still work.
        """
        ip = literal_ip(host)
        if ip is not None:
            return [ip]
        out: list[str] = []
        temporary: DnsTemporary | None = None
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._query(host, rdtype)
            except DnsPermanent:
                return out
            except DnsTemporary as exc:
                temporary = exc
                continue
            if answer is not None:
                out += [r.to_text() for r in answer if r.rdtype in (1, 28)]
        if not out and temporary is not None:
            raise temporary
        return out

    async def ptr(self, ip: str) -> list[str]:
        """Reverse DNS names of an IP ([] when it has none); raises DnsTemporary."""
        name = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
        try:
            answer = await self._query(name, "PTR")
        except DnsPermanent:
            return []
        if answer is None:
            return []
        return [r.to_text().rstrip(".").lower() for r in answer]

    async def dnsbl_listed(self, ip: str, zone: str) -> bool:
        """True when a DNS block list lists the IPv4/IPv6 address; raises DnsTemporary."""
        reversed_ip = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
        label = reversed_ip.removesuffix(".in-addr.arpa").removesuffix(".ip6.arpa")
        try:
            answer = await self._query(f"{label}.{zone.rstrip('.')}", "A")
        except DnsPermanent:
            return False
        # Lists answer 127.0.0.x; anything else (a wildcard, a hijacking resolver) is no listing.
        return answer is not None and any(r.to_text().startswith("127.") for r in answer)

    async def host_addresses(self, host: str) -> list[str]:
        """addresses(), falling back to the system resolver (/etc/hosts) for names
        DNS does not know, such as a smart host called `localhost`."""
        try:
            found = await self.addresses(host)
        except DnsTemporary:
            found = []
        if found:
            return found
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DnsTemporary(f"{host}: cannot resolve: {exc}", "4.4.3") from exc
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def _nameserver(spec: str) -> dns.nameserver.Nameserver:
    """A `host[:port]` DNS server setting as a dnspython nameserver."""
    host, port = split_host_port(spec, 53)
    assert port is not None
    ip = literal_ip(host)
    if ip is None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        ip = str(infos[0][4][0])
    return dns.nameserver.Do53Nameserver(ip, port)
