"""Outbound DKIM signing through a real server, verified by dkimpy and by opendkim-testmsg.

smtplib -> mailplat (relay for 127.0.0.1) -> smtp_out -> a loopback MX (aiosmtpd) that keeps
the exact bytes; keys made by `mailplat dkim keygen`, their records served by the real DNS
server, which both verifiers query.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import subprocess
from pathlib import Path
from typing import Any

import dkim
import dns.resolver
import pytest

from mailplat.trust.fields import Message, split
from tests.support import base_postoffice, running, wait_for, write_site
from tests.support_dns import DnsServer, Zone
from tests.support_smtp import Receiver, free_port
from tests.trust.cli import run

MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: Bob <bob@dest.test>\r\nSubject: signed  mail\r\n"
    b"Date: Mon, 06 May 2024 10:00:00 +0000\r\nMessage-ID: <s1@example.test>\r\n\r\n"
    b"Hello Bob,  \r\nthis is signed.\r\n\r\n\r\n"
)


def signing_site(tmp_path: Path, dns: DnsServer, port: int, dkim_cfg: dict[str, Any]) -> Path:
    dns.zone.mx("dest.test", (10, "mx1.dest.test"))
    dns.zone.a("mx1.dest.test", "127.0.0.2")
    po = base_postoffice()
    po["domains"]["example.test"]["dkim"] = dkim_cfg
    site = {
        "server": {"dns_servers": [dns.address]},
        "relay": {"privileged_ips": ["127.0.0.1"]},
        "delivery": {"remote_port": port, "remote_timeout_seconds": 5},
    }
    return write_site(tmp_path, site=site, postoffices={"example": po}, tls=False)


def keygen_and_publish(site: Path, zone: Zone) -> list[dict[str, Any]]:
    result = run("dkim", "keygen", site, "--json")
    assert result.exit_code == 0, result.output
    keys = json.loads(result.stdout)["keys"]
    for key in keys:
        zone.txt(key["name"], key["txt"])
    return keys


def dns_txt(server: DnsServer):  # type: ignore[no-untyped-def]
    """dkimpy's DNS hook, asking the real test DNS server (dnspython, UDP)."""
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = [server.host]
    res.port = server.port

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            answer = res.resolve(name.decode(), "TXT")
        except dns.exception.DNSException:
            return None
        return b"".join(next(iter(answer)).strings)

    return txt


def submit(port: int, data: bytes = MESSAGE) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
        s.sendmail("alice@example.test", ["bob@dest.test"], data)


async def relayed(site: Path, tmp_path: Path, port: int, data: bytes = MESSAGE) -> bytes:
    rx = await Receiver("127.0.0.2", port).start()
    try:
        async with running(site, tmp_path / "data") as server:
            await asyncio.to_thread(submit, server.port("smtp"), data)
            [got] = await rx.wait(1)
    finally:
        await rx.stop()
    return got.data


@pytest.fixture
def port() -> int:
    return free_port()


async def test_both_signatures_verify_with_dkimpy(
    tmp_path: Path, dns: DnsServer, zone: Zone, port: int
) -> None:
    site = signing_site(tmp_path, dns, port, {})
    keygen_and_publish(site, zone)
    data = await relayed(site, tmp_path, port)
    assert data.count(b"DKIM-Signature:") == 2
    assert b"a=rsa-sha256" in data and b"a=ed25519-sha256" in data
    checker = dkim.DKIM(data)
    txt = dns_txt(dns)
    assert checker.verify(idx=0, dnsfunc=txt)
    assert checker.verify(idx=1, dnsfunc=txt)
    # Oversigned: a second To or Subject added on the way breaks both signatures.
    for extra in (b"To: eve@evil.test\r\n", b"Subject: changed\r\n"):
        assert not dkim.DKIM(extra + data).verify(idx=0, dnsfunc=txt)
    # Only CRLF line endings on the wire (RELIABILITY.md guarantee 4).
    assert data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n")


@pytest.mark.tools
async def test_opendkim_verifies_our_signatures(
    tmp_path: Path, dns: DnsServer, zone: Zone, port: int, port53_dns: DnsServer
) -> None:
    site = signing_site(tmp_path, dns, port, {})
    keygen_and_publish(site, zone)
    data = await relayed(site, tmp_path, port)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {port53_dns.host}\n")

    def opendkim(message: bytes) -> subprocess.CompletedProcess[bytes]:
        # opendkim resolves through /etc/resolv.conf only: give it one naming our DNS
        # server, in a mount namespace of its own (the host's file is untouched).
        script = f"mount --bind {resolv} /etc/resolv.conf && exec opendkim-testmsg"
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", script], input=message, capture_output=True, timeout=30
        )

    message = split(data)
    for selector in ("rsa1", "ed1"):
        # One signature at a time, so each key is proven on its own.
        kept = [
            f
            for f in message.fields
            if f.name != "dkim-signature" or f"s={selector};" in f.value.replace(" ", "")
        ]
        single = Message(tuple(kept), message.body, True).to_bytes()
        assert single.count(b"DKIM-Signature:") == 1
        done = opendkim(single)
        assert done.returncode == 0, (selector, done.stderr)
    tampered = opendkim(data.replace(b"this is signed", b"this is forged"))
    assert tampered.returncode != 0 and b"signature" in tampered.stderr.lower()
    assert ("rsa1._domainkey.example.test", "TXT") in port53_dns.zone.queries


async def test_only_selectors_that_sign_do(
    tmp_path: Path, dns: DnsServer, zone: Zone, port: int
) -> None:
    # Rotation: the new key is declared and published, not yet signing.
    keys = [
        {"selector": "old", "algorithm": "rsa-sha256"},
        {"selector": "new", "algorithm": "rsa-sha256", "sign": False},
    ]
    site = signing_site(tmp_path, dns, port, {"keys": keys})
    keygen_and_publish(site, zone)
    data = await relayed(site, tmp_path, port)
    assert data.count(b"DKIM-Signature:") == 1 and b"s=old;" in data


async def test_remote_author_relayed_by_a_local_sender_is_signed_by_the_sender_domain(
    tmp_path: Path, dns: DnsServer, zone: Zone, port: int
) -> None:
    site = signing_site(tmp_path, dns, port, {"keys": [{"selector": "rsa1"}]})
    keygen_and_publish(site, zone)
    data = MESSAGE.replace(b"From: Alice <alice@example.test>", b"From: Ann <ann@author.test>")
    got = await relayed(site, tmp_path, port, data)
    assert b"d=example.test;" in got
    assert dkim.verify(got, dnsfunc=dns_txt(dns))


async def test_a_key_gone_at_runtime_defers_instead_of_sending_unsigned(
    tmp_path: Path, dns: DnsServer, zone: Zone, port: int
) -> None:
    site = signing_site(tmp_path, dns, port, {"keys": [{"selector": "rsa1"}]})
    [key] = keygen_and_publish(site, zone)
    rx = await Receiver("127.0.0.2", port).start()
    try:
        async with running(site, tmp_path / "data") as server:
            Path(key["key_file"]).unlink()
            await asyncio.to_thread(submit, server.port("smtp"))
            await wait_for(
                lambda: any(
                    e.attempts
                    for e in [
                        server.spool.read_record("smtp", r)[0] for r in server.spool.records("smtp")
                    ]
                )
            )
            [rid] = server.spool.records("smtp")
            env = server.spool.read_record("smtp", rid)[0]
            assert "DKIM key file" in (env.get("last-error") or "")
        assert rx.got == []
    finally:
        await rx.stop()
