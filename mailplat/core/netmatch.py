"""Match client IPs against config patterns: single IPs, CIDR ranges and `*` wildcards."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> IPNet | tuple[str, ...]:
    if "*" in pattern:
        return tuple(pattern.split("."))
    return ipaddress.ip_network(pattern, strict=False)


def ip_matches(ip: str, patterns: Iterable[str]) -> bool:
    """True when `ip` falls in any pattern; an unparsable ip matches nothing."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    for pattern in patterns:
        compiled = _compile(pattern)
        if isinstance(compiled, tuple):
            parts = str(addr).split(".")
            if len(parts) == 4 and all(p in ("*", q) for p, q in zip(compiled, parts, strict=True)):
                return True
        elif addr.version == compiled.version and addr in compiled:
            return True
    return False


def is_open_range(pattern: str) -> bool:
    """True for a pattern that matches every address (an accidental open relay)."""
    compiled = _compile(pattern)
    if isinstance(compiled, tuple):
        return all(p == "*" for p in compiled)
    return compiled.prefixlen == 0
