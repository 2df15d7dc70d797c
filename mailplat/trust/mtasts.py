"""MTA-STS (RFC 8461): the TLS policy a recipient domain publishes, fetched over HTTPS.

Input: a recipient domain, our Resolver, a CA bundle (the system's plus
delivery.mta_sts.ca_file). Output: the domain's Policy (mode enforce,
testing or none; the MX patterns; max_age) or None when it publishes none.
- Discovery (§3.1): TXT `_mta-sts.<domain>` with `v=STSv1; id=...`.
- Fetch (§3.3): GET https://mta-sts.<domain>/.well-known/mta-sts.txt, the
  certificate checked against that name, HTTP 200 only (no redirects),
  text/plain, at most 64 KiB, within the fetch timeout. The address comes
  from our Resolver like every other lookup.
- Cache (§5.1): a policy is kept for its max_age and refetched when the TXT
  id changes; a failed refetch keeps the cached policy. No policy and a
  failed fetch mean no policy: mail goes out as without MTA-STS.
matches() tells whether an MX host name fits a policy's `mx:` patterns
(a leading `*.` stands for exactly one label, §4.1).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from mailplat.dns.resolver import DnsTemporary, Resolver

log = logging.getLogger("mailplat.outbound")

MAX_POLICY_BYTES = 64 * 1024
HTTPS_PORT = 443


@dataclass(frozen=True, slots=True)
class Policy:
    domain: str
    id: str
    mode: str  # enforce | testing | none
    mx: tuple[str, ...]
    max_age: int
    fetched_at: float

    def expired(self, now: float) -> bool:
        return now >= self.fetched_at + self.max_age

    def matches(self, host: str) -> bool:
        """RFC 8461 §4.1: is this MX host one the policy names?"""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                head, _, rest = host.partition(".")
                if head and rest == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False


class PolicyError(Exception):
    """The policy could not be fetched or read."""


def parse(text: str, domain: str, policy_id: str, now: float) -> Policy:
    """RFC 8461 §3.2: `key: value` lines; version STSv1, a mode, mx patterns, max_age."""
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("not an STSv1 policy")
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"unknown mode {mode!r}")
    age_text = (fields.get("max_age") or [""])[0]
    if not age_text.isdigit():
        raise PolicyError("max_age missing or not a number")
    mx = tuple(m.rstrip(".").lower() for m in fields.get("mx", []) if m)
    if mode != "none" and not mx:
        raise PolicyError("no mx: lines")
    return Policy(domain, policy_id, mode, mx, min(int(age_text), 31557600), now)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """PKIX checking as RFC 8461 §4.2 wants: a valid chain for the name asked."""
    ctx = ssl.create_default_context()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


class MtaSts:
    """Policies by recipient domain, fetched when needed and kept for their max_age."""

    def __init__(self, https_port: int = HTTPS_PORT) -> None:
        self.https_port = https_port
        self._cache: dict[str, Policy] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def policy(
        self,
        resolver: Resolver,
        domain: str,
        *,
        ca_file: Path | None,
        fetch_seconds: float,
        now: float | None = None,
    ) -> Policy | None:
        """The domain's policy in force, or None (no policy, or none could be had)."""
        now = time.time() if now is None else now
        lock = self._locks.setdefault(domain, asyncio.Lock())
        async with lock:
            cached = self._cache.get(domain)
            try:
                policy_id = await self._policy_id(resolver, domain)
            except DnsTemporary:
                policy_id = cached.id if cached else None
            if policy_id is None:
                # §5.1: no TXT any more; a cached policy still holds until it expires.
                return cached if cached and not cached.expired(now) else None
            if cached is not None and cached.id == policy_id and not cached.expired(now):
                return cached
            try:
                text = await self._fetch(resolver, domain, ca_file, fetch_seconds)
                fresh = parse(text, domain, policy_id, now)
            except (PolicyError, OSError, ssl.SSLError, TimeoutError, DnsTemporary) as exc:
                log.info("outbound mta-sts-fetch-failed domain=%s why=%s", domain, exc)
                return cached if cached and not cached.expired(now) else None
            self._cache[domain] = fresh
            log.info(
                "outbound mta-sts-policy domain=%s mode=%s mx=%s max_age=%d",
                domain,
                fresh.mode,
                ",".join(fresh.mx),
                fresh.max_age,
            )
            return fresh

    async def _policy_id(self, resolver: Resolver, domain: str) -> str | None:
        texts = await resolver.txt(f"_mta-sts.{domain}")
        found = [t for t in texts if t.replace(" ", "").startswith("v=STSv1;")]
        if len(found) != 1:
            return None  # §3.1: none, or several, is no policy
        for part in found[0].split(";"):
            key, _, value = part.strip().partition("=")
            if key == "id" and value.isalnum() and 0 < len(value) <= 32:
                return value
        return None

    async def _fetch(
        self, resolver: Resolver, domain: str, ca_file: Path | None, seconds: float
    ) -> str:
        host = f"mta-sts.{domain}"
        ips = await resolver.addresses(host)
        if not ips:
            raise PolicyError(f"{host} has no address")
        ctx = tls_context(ca_file)
        async with asyncio.timeout(seconds):
            reader, writer = await asyncio.open_connection(
                ips[0], self.https_port, ssl=ctx, server_hostname=host
            )
            try:
                writer.write(
                    f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\n"
                    "User-Agent: mailplat\r\nConnection: close\r\n\r\n".encode("ascii")
                )
                await writer.drain()
                raw = await reader.read(MAX_POLICY_BYTES + 8192)
                while len(raw) <= MAX_POLICY_BYTES + 8192:
                    more = await reader.read(8192)
                    if not more:
                        break
                    raw += more
            finally:
                writer.close()
        return _body(raw)


def _body(raw: bytes) -> str:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise PolicyError("no HTTP response")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split()
    if len(status) < 2 or status[1] != "200":
        # §3.3: redirects are not followed; anything but 200 is no policy.
        raise PolicyError(f"HTTP {' '.join(status[1:]) or '?'}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    if not headers.get("content-type", "").lower().startswith("text/plain"):
        raise PolicyError("policy is not text/plain")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    if len(body) > MAX_POLICY_BYTES:
        raise PolicyError("policy larger than 64 KiB")
    return body.decode("utf-8", "replace")


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out
