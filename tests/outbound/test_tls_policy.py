"""Outbound TLS policy: MTA-STS (RFC 8461) against a local HTTPS server, DANE (RFC 7672)
with TLSA records the test DNS server marks validated. Certificates come from a test CA
(trustme); the MX hosts are aiosmtpd receivers offering STARTTLS with them."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.outbound.conftest import Harness
from tests.support_smtp import Script, free_port

POLICY = "version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


@dataclass
class PolicyServer:
    """An HTTPS server answering GET /.well-known/mta-sts.txt on 127.0.0.9."""

    body: str
    status: str = "200 OK"
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append(await reader.readuntil(b"\r\n\r\n"))
        data = self.body.encode()
        writer.write(
            f"HTTP/1.1 {self.status}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def policy_server(ca: trustme.CA) -> AsyncIterator[PolicyServer]:
    ps = PolicyServer(POLICY.format(mode="enforce", mx="mx1.dest.test"))
    ps.port = free_port("127.0.0.9")
    server = await asyncio.start_server(
        ps.handle, "127.0.0.9", ps.port, ssl=server_tls(ca, "mta-sts.dest.test")
    )
    try:
        yield ps
    finally:
        server.close()
        await server.wait_closed()


def sts_site(harness: Harness, ca: trustme.CA, tmp_path: Path, policy: PolicyServer) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    harness.configure({"delivery": {"mta_sts": {"enabled": True, "ca_file": str(ca_file)}}})
    harness.outbound.mta_sts.https_port = policy.port  # the test's HTTPS server, not 443
    zone = harness.zone
    zone.mx("dest.test", (10, "mx1.dest.test"), (20, "mx2.dest.test"))
    zone.a("mx1.dest.test", "127.0.0.2")
    zone.a("mx2.dest.test", "127.0.0.3")
    zone.txt("_mta-sts.dest.test", "v=STSv1; id=20240506")
    zone.a("mta-sts.dest.test", "127.0.0.9")


async def test_enforce_delivers_over_verified_tls_to_a_listed_mx(
    harness: Harness, ca: trustme.CA, tmp_path: Path, policy_server: PolicyServer
) -> None:
    sts_site(harness, ca, tmp_path, policy_server)
    mx1 = await harness.receiver("127.0.0.2", Script(tls=server_tls(ca, "mx1.dest.test")))
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert len(mx1.got) == 1 and mx1.got[0].tls
    assert b"GET /.well-known/mta-sts.txt HTTP/1.1" in policy_server.requests[0]
    assert b"Host: mta-sts.dest.test" in policy_server.requests[0]
    # The policy is cached for its max_age: the next message does not fetch it again.
    await harness.queue(["carol@dest.test"])
    await harness.outbound.drain()
    assert len(mx1.got) == 2 and len(policy_server.requests) == 1


async def test_enforce_refuses_a_certificate_for_another_name(
    harness: Harness, ca: trustme.CA, tmp_path: Path, policy_server: PolicyServer
) -> None:
    sts_site(harness, ca, tmp_path, policy_server)
    mx1 = await harness.receiver("127.0.0.2", Script(tls=server_tls(ca, "someone-else.test")))
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert mx1.got == []  # and never in plaintext
    env = harness.record(rid)
    assert env.attempts == 1 and "MTA-STS requires a valid certificate" in env.get("last-error")


async def test_enforce_skips_mx_hosts_the_policy_does_not_name(
    harness: Harness, ca: trustme.CA, tmp_path: Path, policy_server: PolicyServer
) -> None:
    policy_server.body = POLICY.format(mode="enforce", mx="*.elsewhere.test")
    sts_site(harness, ca, tmp_path, policy_server)
    mx1 = await harness.receiver("127.0.0.2", Script(tls=server_tls(ca, "mx1.dest.test")))
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert mx1.got == [] and mx1.connections == 0
    assert "no MX host matches its MTA-STS policy" in harness.record(rid).get("last-error")


async def test_enforce_without_starttls_defers(
    harness: Harness, ca: trustme.CA, tmp_path: Path, policy_server: PolicyServer
) -> None:
    sts_site(harness, ca, tmp_path, policy_server)
    mx1 = await harness.receiver("127.0.0.2")  # no STARTTLS offered
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert mx1.got == []
    assert "no STARTTLS offered, but MTA-STS requires TLS" in harness.record(rid).get("last-error")


async def test_testing_mode_and_a_failed_fetch_stay_opportunistic(
    harness: Harness, ca: trustme.CA, tmp_path: Path, policy_server: PolicyServer
) -> None:
    policy_server.body = POLICY.format(mode="testing", mx="mx9.dest.test")
    sts_site(harness, ca, tmp_path, policy_server)
    mx1 = await harness.receiver("127.0.0.2")
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert len(mx1.got) == 1 and not mx1.got[0].tls
    # A policy host answering 404 is no policy: mail still goes (RFC 8461 §5.1).
    harness.zone.records[("_mta-sts.dest.test", "TXT")] = []
    harness.zone.txt("_mta-sts.dest.test", "v=STSv1; id=2")
    harness.outbound.mta_sts = type(harness.outbound.mta_sts)(policy_server.port)
    policy_server.status = "404 Not Found"
    await harness.queue(["carol@dest.test"])
    await harness.outbound.drain()
    assert len(mx1.got) == 2


async def test_mta_sts_off_fetches_nothing(
    harness: Harness, ca: trustme.CA, tmp_path: Path, policy_server: PolicyServer
) -> None:
    sts_site(harness, ca, tmp_path, policy_server)
    harness.configure({"delivery": {"mta_sts": {"enabled": False}}})
    mx1 = await harness.receiver("127.0.0.2")
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert len(mx1.got) == 1 and policy_server.requests == []
    assert harness.zone.asked("_mta-sts.dest.test") == []


# -- DANE ---------------------------------------------------------------------------------


def spki_sha256(ca: trustme.CA, name: str) -> tuple[ssl.SSLContext, bytes]:
    leaf = ca.issue_cert(name)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ctx, hashlib.sha256(spki).digest()


def dane_site(harness: Harness, secure: bool = True) -> None:
    harness.configure({"delivery": {"dane": True}})
    zone = harness.zone
    zone.mx("dest.test", (10, "mx1.dest.test"))
    zone.a("mx1.dest.test", "127.0.0.2")
    if secure:
        zone.secure("dest.test")
        zone.secure(f"_{harness.port}._tcp.mx1.dest.test")


async def test_dane_delivers_when_the_certificate_matches_tlsa(
    harness: Harness, ca: trustme.CA
) -> None:
    dane_site(harness)
    ctx, digest = spki_sha256(ca, "mx1.dest.test")
    harness.zone.tlsa(f"_{harness.port}._tcp.mx1.dest.test", 3, 1, 1, digest)
    mx1 = await harness.receiver("127.0.0.2", Script(tls=ctx))
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert len(mx1.got) == 1 and mx1.got[0].tls


async def test_dane_refuses_a_certificate_that_matches_no_tlsa(
    harness: Harness, ca: trustme.CA
) -> None:
    dane_site(harness)
    ctx, _ = spki_sha256(ca, "mx1.dest.test")
    harness.zone.tlsa(f"_{harness.port}._tcp.mx1.dest.test", 3, 1, 1, b"\x00" * 32)
    mx1 = await harness.receiver("127.0.0.2", Script(tls=ctx))
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert mx1.got == []
    assert "DANE: the certificate matches no TLSA record" in harness.record(rid).get("last-error")


async def test_dane_requires_starttls(harness: Harness) -> None:
    dane_site(harness)
    harness.zone.tlsa(f"_{harness.port}._tcp.mx1.dest.test", 3, 1, 1, b"\x01" * 32)
    mx1 = await harness.receiver("127.0.0.2")
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert mx1.got == []
    assert "DANE requires TLS" in harness.record(rid).get("last-error")


async def test_tlsa_not_validated_by_dnssec_is_ignored(harness: Harness) -> None:
    dane_site(harness, secure=False)
    harness.zone.tlsa(f"_{harness.port}._tcp.mx1.dest.test", 3, 1, 1, b"\x01" * 32)
    mx1 = await harness.receiver("127.0.0.2")  # plaintext is fine: DANE does not apply
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert len(mx1.got) == 1
