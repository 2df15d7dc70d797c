"""DNS checks on a client and its sender: reverse DNS, block lists, sender domain.

Input: the site's security settings, a Resolver, the client IP, whether it
authenticated, the sender's domain. Output: a reply to refuse with, or None.
Rules (security settings in site.yaml):
- require_ptr: an unauthenticated client needs a PTR name (550 5.7.25;
  450 4.7.25 when DNS cannot tell now);
- dnsbl: an unauthenticated client listed by an enabled zone is refused
  (554 5.7.1 naming the zone); a list that does not answer is skipped, so a
  dead list never stops mail;
- reject_invalid_sender_domain: a sender domain with no MX and no address
  is refused (550 5.1.8; 451 4.1.8 on a temporary DNS failure).
Clients in security.ip_whitelist skip the client checks.
"""

from __future__ import annotations

import logging

from mailplat.config.models.site import Security
from mailplat.core import replies
from mailplat.core.netmatch import ip_matches
from mailplat.dns.resolver import DnsPermanent, DnsTemporary, Resolver

log = logging.getLogger("mailplat.smtp")


async def check_client(security: Security, resolver: Resolver, ip: str) -> str | None:
    """PTR and DNSBL checks for an unauthenticated client; a reply to refuse with, or None."""
    if ip_matches(ip, security.ip_whitelist):
        return None
    if security.require_ptr:
        try:
            names = await resolver.ptr(ip)
        except DnsTemporary as exc:
            log.info("smtp ptr-unknown peer=%s why=%s", ip, exc)
            return replies.S450_PTR_UNKNOWN
        if not names:
            log.info("smtp no-ptr peer=%s", ip)
            return replies.S550_NO_PTR
    for bl in security.dnsbl:
        if not bl.enabled:
            continue
        try:
            listed = await resolver.dnsbl_listed(ip, bl.zone)
        except DnsTemporary as exc:
            log.warning("smtp dnsbl-unavailable zone=%s peer=%s why=%s", bl.zone, ip, exc)
            continue
        if listed:
            log.info("smtp dnsbl-listed zone=%s peer=%s", bl.zone, ip)
            return replies.S554_DNSBL.format(zone=bl.zone)
    return None


async def check_sender_domain(resolver: Resolver, domain: str) -> str | None:
    """A reply refusing a sender domain that cannot receive mail, or None."""
    try:
        await resolver.mx(domain)
    except DnsPermanent as exc:
        log.info("smtp sender-domain-invalid domain=%s why=%s", domain, exc)
        return replies.S550_SENDER_DOMAIN_INVALID
    except DnsTemporary as exc:
        log.info("smtp sender-domain-unknown domain=%s why=%s", domain, exc)
        return replies.S451_SENDER_DOMAIN_UNKNOWN
    return None
