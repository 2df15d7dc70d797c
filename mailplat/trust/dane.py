"""DANE for SMTP (RFC 7672): the TLSA records an MX host publishes, and whether its certificate fits.

Input: an MX host and port, our Resolver (whose upstream validates DNSSEC),
the certificate the host presented. Output:
- lookup(): the usable TLSA records of `_<port>._tcp.<host>` when the
  answer is DNSSEC-validated (the AD bit) and so is the domain's MX answer
  (§2.2.1: an insecure MX name cannot be trusted to pick its TLSA); None
  when DANE does not apply, so delivery stays opportunistic;
- matches(): RFC 6698 §2.1 matching of DANE-EE (usage 3) records: the whole
  certificate (selector 0) or its public key (1), exact (0), SHA-256 (1) or
  SHA-512 (2). DANE-TA (usage 2) needs the peer's chain, which Python's ssl
  does not give us before 3.13: such records count as unusable, and a host
  with only unusable records still gets encrypted-only delivery (§2.2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailplat.dns.resolver import Resolver

Record = tuple[int, int, int, bytes]  # usage, selector, matching type, data


@dataclass(frozen=True, slots=True)
class Tlsa:
    """What DANE requires of one MX host."""

    host: str
    records: tuple[Record, ...]  # the usable (DANE-EE) ones

    @property
    def authenticates(self) -> bool:
        """False: records exist but none is usable; TLS is still required."""
        return bool(self.records)


async def lookup(resolver: Resolver, domain: str, host: str, port: int) -> Tlsa | None:
    """The host's DANE requirements, or None when DANE does not apply; raises DnsTemporary."""
    records, secure = await resolver.tlsa(f"_{port}._tcp.{host}")
    if not records or not secure:
        return None
    if host != domain and not await resolver.validated(domain, "MX"):
        return None
    usable = tuple(r for r in records if r[0] == 3 and r[1] in (0, 1) and r[2] in (0, 1, 2))
    return Tlsa(host, usable)


def _digest(mtype: int, data: bytes) -> bytes:
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return data


def matches(tlsa: Tlsa, cert_der: bytes) -> bool:
    """True when the presented certificate fits one of the usable records."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        return False
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for _usage, selector, mtype, data in tlsa.records:
        subject = cert_der if selector == 0 else spki
        if _digest(mtype, subject) == data:
            return True
    return False
