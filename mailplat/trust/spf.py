"""SPF (RFC 7208): may this IP send mail for this domain? check_host() over our Resolver.

Input: the client IP, the domain to check (the MAIL FROM domain, or the HELO
name), the sender address and the HELO name (for macros). Output: a Result
(pass, fail, softfail, neutral, none, temperror, permerror) and why.

Our own evaluator rather than pyspf, because pyspf does its own synchronous
DNS; here every query goes through the site's asynchronous, cached Resolver.
Limits kept (RFC 7208 §4.6.4): at most 10 mechanisms and modifiers that
query DNS (include, a, mx, ptr, exists, redirect), at most 10 names per mx
or ptr, at most 2 void lookups (answers with nothing); past any of them the
result is permerror. Macros (§7) are expanded with their transformers;
%{p} is "unknown", which §7.3 allows. `exp=` is ignored: we never reject
with the sender's text.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass, field

from mailplat.dns.resolver import DnsTemporary, Resolver

MAX_LOOKUPS = 10
MAX_VOID = 2
MAX_NAMES = 10
RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
_MACRO = re.compile(r"%(?:\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}|%|_|-)", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.]*$")

Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Result:
    result: str
    reason: str = ""
    domain: str = ""


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass
class _Check:
    """One evaluation: the facts and the counters shared by nested includes."""

    ip: Ip
    sender: str
    helo: str
    resolver: Resolver
    lookups: int = 0
    void: int = 0
    trail: list[str] = field(default_factory=list)
    # The earliest expiry of the cached answers this result rests on (0: not cached).
    valid_until: float = float("inf")

    def rests_on(self, name: str, rdtype: str) -> None:
        self.valid_until = min(self.valid_until, self.resolver.cached_until(name, rdtype))

    def count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise _PermError(f"more than {MAX_LOOKUPS} DNS lookups (RFC 7208 §4.6.4)")

    def voided(self, found: list[str]) -> list[str]:
        if not found:
            self.void += 1
            if self.void > MAX_VOID:
                raise _PermError(f"more than {MAX_VOID} void lookups (RFC 7208 §4.6.4)")
        return found

    async def query(self, name: str, rdtype: str) -> list[str]:
        try:
            found = await self.resolver.records(name, rdtype)
        except DnsTemporary as exc:
            raise _TempError(str(exc)) from exc
        self.rests_on(name, rdtype)
        return found


_MEMO_SIZE = 10_000


async def check_host(
    resolver: Resolver, ip: str, domain: str, sender: str, helo: str = ""
) -> Result:
    """RFC 7208 §4: the SPF result for `domain` (checked for `sender`) and client `ip`.

    With a caching Resolver the same question within its answers' TTLs is
    answered from memory: the result cannot differ until one of them expires.
    """
    # A result stays valid exactly as long as every cached answer it came from.
    memo = resolver.derived
    key = ("spf", ip, domain.lower(), sender.lower(), helo.lower())
    hit = memo.get(key)
    if hit is not None and hit[0] > time.time() and isinstance(hit[1], Result):
        return hit[1]
    result, valid_until = await _check_host(resolver, ip, domain, sender, helo)
    if resolver.cache and valid_until > time.time() and result.result != "temperror":
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[key] = (valid_until, result)
    return result


async def _check_host(
    resolver: Resolver, ip: str, domain: str, sender: str, helo: str
) -> tuple[Result, float]:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return Result("permerror", f"not an IP address: {ip}", domain), 0.0
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # RFC 7208 §5: an IPv4 client on an IPv6 socket
    domain = domain.rstrip(".").lower()
    if not _valid_domain(domain):
        return Result("none", f"{domain!r} is not a domain SPF can check", domain), 0.0
    check = _Check(addr, sender or f"postmaster@{domain}", helo, resolver)
    try:
        result, why = await _evaluate(check, domain, top=True)
    except _TempError as exc:
        return Result("temperror", str(exc), domain), 0.0
    except _PermError as exc:
        return Result("permerror", str(exc), domain), check.valid_until
    except (ValueError, IndexError, UnicodeError) as exc:
        # A record no rule above foresaw: the sender's error, never our 451.
        return Result("permerror", f"unreadable SPF record ({type(exc).__name__})", domain), 0.0
    return Result(result, why, domain), check.valid_until


def _valid_domain(domain: str) -> bool:
    labels = domain.split(".")
    return len(labels) > 1 and all(0 < len(lb) < 64 for lb in labels) and len(domain) <= 253


async def _record(check: _Check, domain: str) -> str | None:
    """The domain's one SPF record (None: no record); PermError for two."""
    try:
        texts = await check.resolver.txt(domain)
    except DnsTemporary as exc:
        raise _TempError(str(exc)) from exc
    check.rests_on(domain, "TXT")
    found = [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    if len(found) > 1:
        raise _PermError(f"{domain} publishes {len(found)} SPF records (RFC 7208 §4.5)")
    return found[0] if found else None


async def _evaluate(check: _Check, domain: str, *, top: bool = False) -> tuple[str, str]:
    record = await _record(check, domain)
    if record is None:
        if top:
            return "none", f"{domain} publishes no SPF record"
        raise _PermError(f"{domain} publishes no SPF record (included or redirected to)")
    redirect: str | None = None
    terms = record.split()[1:]
    parsed: list[tuple[str, str, str]] = []
    for term in terms:
        name, sep, value = term.partition("=")
        if sep and _NAME.match(name) and ":" not in name and "/" not in name:
            key = name.lower()
            if key == "redirect":
                if redirect is not None:
                    raise _PermError("redirect= given twice")
                redirect = value
            elif key == "exp":
                pass
            continue  # unknown modifiers are ignored (§6)
        qualifier = "+"
        if term[:1] in _QUALIFIERS:
            qualifier, term = term[0], term[1:]
        mech, _, arg = _split_mechanism(term)
        if mech not in _MECHANISMS:
            raise _PermError(f"unknown mechanism {term!r} in the SPF record of {domain}")
        parsed.append((qualifier, mech, arg))
    for qualifier, mech, arg in parsed:
        if await _matches(check, domain, mech, arg):
            shown = f"{qualifier if qualifier != '+' else ''}{mech}{arg}"
            return _QUALIFIERS[qualifier], f"{domain}: {shown} matched {check.ip}"
    if redirect is not None:
        check.count()
        target = _expand(check, redirect, domain)
        if not _valid_domain(target):
            raise _PermError(f"redirect to {target!r}, not a domain")
        return await _evaluate(check, target)
    return "neutral", f"{domain}: nothing matched {check.ip}"


def _split_mechanism(term: str) -> tuple[str, str, str]:
    """("a", ":", "example.test/24") from "a:example.test/24"; the arg keeps its separator."""
    for i, ch in enumerate(term):
        if ch in ":/":
            return term[:i].lower(), ch, term[i:]
    return term.lower(), "", ""


def _cidr(arg: str) -> tuple[str, int | None, int | None]:
    """(domain-spec, v4 prefix, v6 prefix) of `:spec/24//64`, every part optional."""
    spec, rest = "", arg
    if arg.startswith(":"):
        body = arg[1:]
        cut = body.find("/")
        spec, rest = (body, "") if cut < 0 else (body[:cut], body[cut:])
        if not spec:
            raise _PermError("a mechanism's ':' needs a domain after it")
    if rest and not rest.startswith("/"):
        raise _PermError(f"bad mechanism argument {arg!r}")
    v4: int | None = None
    v6: int | None = None
    if rest.startswith("//"):
        v6 = _prefix(rest[2:], 128)
    elif rest:
        first, sep, second = rest[1:].partition("//")
        v4 = _prefix(first, 32)
        if sep:
            v6 = _prefix(second, 128)
    return spec, v4, v6


def _prefix(text: str, most: int) -> int:
    if not text.isdigit() or int(text) > most or (len(text) > 1 and text.startswith("0")):
        raise _PermError(f"bad CIDR length /{text}")
    return int(text)


def _in(ip: Ip, address: str, v4: int | None, v6: int | None) -> bool:
    length = (v4 if v4 is not None else 32) if ip.version == 4 else (v6 if v6 is not None else 128)
    net = _network(address, length)
    return net is not None and net.version == ip.version and ip in net


@functools.lru_cache(maxsize=4096)
def _network(
    text: str, length: int | None = None
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A record's address or range, parsed once (the same records come with every message)."""
    try:
        if length is None:
            return ipaddress.ip_network(text, strict=False)
        return ipaddress.ip_network(f"{ipaddress.ip_address(text)}/{length}", strict=False)
    except ValueError:
        return None


async def _matches(check: _Check, domain: str, mech: str, arg: str) -> bool:
    ip = check.ip
    if mech == "all":
        if arg:
            raise _PermError("all takes no argument")
        return True
    if mech in ("ip4", "ip6"):
        if not arg.startswith(":"):
            raise _PermError(f"{mech} needs an address")
        net = _network(arg[1:])
        if net is None:
            raise _PermError(f"bad {mech} network {arg[1:]!r}")
        if (mech == "ip4") != (net.version == 4):
            raise _PermError(f"{mech} with an IPv{net.version} network")
        return net.version == ip.version and ip in net
    if mech == "include":
        if not arg.startswith(":") or len(arg) < 2:
            raise _PermError("include needs a domain")
        check.count()
        target = _expand(check, arg[1:], domain)
        result, _ = await _evaluate(check, target)
        # RFC 7208 §5.2: only pass matches; errors propagate.
        return result == "pass"
    spec, v4, v6 = _cidr(arg)
    target = _expand(check, spec, domain) if spec else domain
    rdtype = "A" if ip.version == 4 else "AAAA"
    if mech == "a":
        check.count()
        found = check.voided(await check.query(target, rdtype))
        return any(_in(ip, a, v4, v6) for a in found)
    if mech == "mx":
        check.count()
        hosts = check.voided(await check.query(target, "MX"))
        if len(hosts) > MAX_NAMES:
            raise _PermError(f"{target} has more than {MAX_NAMES} MX names (RFC 7208 §4.6.4)")
        for text in hosts:
            host = text.split()[-1].rstrip(".")
            if not host:
                continue  # a null MX has no addresses
            found = check.voided(await check.query(host, rdtype))
            if any(_in(ip, a, v4, v6) for a in found):
                return True
        return False
    if mech == "exists":
        if not spec:
            raise _PermError("exists needs a domain")
        check.count()
        # RFC 7208 §5.7: always an A query, whatever the client's family.
        return bool(check.voided(await check.query(target, "A")))
    if mech == "ptr":
        check.count()
        return await _ptr_matches(check, target)
    raise _PermError(f"unknown mechanism {mech}")


async def _ptr_matches(check: _Check, target: str) -> bool:
    """RFC 7208 §5.5: a validated reverse name of the IP within the target domain."""
    reverse = ipaddress.ip_address(check.ip).reverse_pointer
    names = [n.rstrip(".").lower() for n in await check.query(reverse, "PTR")][:MAX_NAMES]
    rdtype = "A" if check.ip.version == 4 else "AAAA"
    for name in names:
        if name != target and not name.endswith("." + target):
            continue
        try:
            forward = await check.resolver.records(name, rdtype)
        except DnsTemporary:
            continue  # §5.5: a failed forward lookup just skips this name
        check.rests_on(name, rdtype)
        if any(_in(check.ip, a, None, None) for a in forward):
            return True
    return False


# -- macros (RFC 7208 §7) ------------------------------------------------------------------


def _expand(check: _Check, spec: str, domain: str) -> str:
    def letter_value(letter: str) -> str:
        sender = check.sender
        local, _, sdomain = sender.rpartition("@")
        ip = check.ip
        values = {
            "s": sender,
            "l": local or "postmaster",
            "o": sdomain,
            "d": domain,
            "i": _dotted(ip),
            "p": "unknown",
            "v": "in-addr" if ip.version == 4 else "ip6",
            "h": check.helo or domain,
        }
        if letter not in values:
            raise _PermError(f"macro %{{{letter}}} is not allowed here")
        return values[letter]

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "%%":
            return "%"
        if whole == "%_":
            return " "
        if whole == "%-":
            return "%20"
        letter = match.group(1)
        value = letter_value(letter.lower())
        delims = match.group(4) or "."
        parts = re.split("[" + re.escape(delims) + "]", value)
        if match.group(3):
            parts.reverse()
        if match.group(2):
            keep = int(match.group(2))
            if keep == 0:
                raise _PermError("a macro keeps at least one part")
            parts = parts[-keep:]
        out = ".".join(parts)
        if letter.isupper():
            out = urllib.parse.quote(out, safe="")
        return out

    if "%" in spec:
        rest = _MACRO.sub("", spec)
        if "%" in rest:
            raise _PermError(f"bad macro in {spec!r}")
    expanded = _MACRO.sub(replace, spec).rstrip(".").lower()
    # §7.3: a name too long loses labels on the left.
    while len(expanded) > 253 and "." in expanded:
        expanded = expanded.split(".", 1)[1]
    return expanded


def _dotted(ip: Ip) -> str:
    if ip.version == 4:
        return str(ip)
    return ".".join(ip.exploded.replace(":", ""))
