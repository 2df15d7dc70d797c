"""Fixtures for sender authentication: test keys, their DNS records, senders that sign.

Keys are made once per run (RSA generation is slow). `publish` puts a key's
record into the test zone; `dkimpy_sign` and `arc_seal` are the *other*
implementation (dkimpy) playing remote senders and forwarders, so inbound
verification is never checked only against our own signer.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailplat.trust.dkim import public_record
from tests.support import base_postoffice, deep_merge, write_site
from tests.support_dns import DnsServer, Zone


@dataclass(frozen=True)
class SenderKey:
    rsa: rsa.RSAPrivateKey
    ed: ed25519.Ed25519PrivateKey

    @property
    def rsa_pem(self) -> bytes:
        return self.rsa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    @property
    def ed_seed(self) -> bytes:
        raw = self.ed.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw)


@pytest.fixture(scope="session")
def test_keys() -> list[SenderKey]:
    return [
        SenderKey(rsa.generate_private_key(65537, 2048), ed25519.Ed25519PrivateKey.generate())
        for _ in range(3)
    ]


def publish(zone: Zone, selector: str, domain: str, key: Any) -> None:
    zone.txt(f"{selector}._domainkey.{domain}", public_record(key))


def dkimpy_sign(message: bytes, domain: str, key: SenderKey, selector: str = "s1") -> bytes:
    """A remote sender's DKIM signature (dkimpy, rsa-sha256, relaxed/relaxed)."""
    sig = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key.rsa_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return sig + message


def arc_seal(
    message: bytes, domain: str, key: SenderKey, results: str, selector: str = "arc"
) -> bytes:
    """A forwarder's ARC set (dkimpy's arc_sign) over the message as it forwards it.

    The forwarder's own Authentication-Results (what it found on arrival) is
    what ARC-Authentication-Results copies, so it goes on first.
    """
    message = f"Authentication-Results: {domain}; {results}\r\n".encode() + message
    headers = dkim.arc_sign(
        message,
        selector.encode(),
        domain.encode(),
        key.rsa_pem,
        domain.encode(),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    assert headers, "dkimpy made no ARC set"
    return b"".join(headers) + message


def mail(
    from_: str = "Sam <sam@sender.test>",
    to: str = "alice@example.test",
    subject: str = "hello",
    body: str = "Hello Alice.\r\n",
    extra: str = "",
) -> bytes:
    return (
        f"From: {from_}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 06 May 2024 10:00:00 +0000\r\nMessage-ID: <{abs(hash(subject))}@sender.test>\r\n"
        f"{extra}\r\n{body}"
    ).encode()


def trust_site(
    tmp_path: Path,
    dns: DnsServer,
    auth: dict[str, Any] | None = None,
    site: dict[str, Any] | None = None,
    domains: dict[str, Any] | None = None,
) -> Path:
    """A site that verifies inbound mail (authentication.verify) with DNS from `dns`."""
    po = base_postoffice()
    if domains:
        po["domains"] = deep_merge(po["domains"], domains)
    extra = {
        "server": {"dns_servers": [dns.address]},
        "authentication": {"verify": True, **(auth or {})},
    }
    return write_site(
        tmp_path, site=deep_merge(extra, site or {}), postoffices={"example": po}, tls=False
    )


@pytest.fixture
def port53_dns(zone: Zone) -> Iterator[DnsServer]:
    """The same zone on port 53 of a loopback address of its own, for tools that read
    /etc/resolv.conf (run them in a mount namespace with a resolv.conf naming it)."""
    import os
    import random

    if os.geteuid() != 0:
        pytest.skip("needs root: a DNS server on port 53 and a mount namespace")
    host = f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(1, 250)}"
    with DnsServer(zone, host=host, port=53) as server:
        yield server
