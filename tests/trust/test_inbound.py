"""Inbound sender authentication through a real server: smtplib -> smtp listener -> Maildir.

The client is 127.0.0.1; SPF, DKIM keys, DMARC policies and ARC keys come
from the real DNS server on loopback. Remote senders sign with dkimpy and
forwarders seal with dkimpy's arc_sign (another implementation than ours).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
from pathlib import Path

import pytest

from mailplat.core import replies
from tests.support import maildir_files, running, wait_for
from tests.support_dns import DnsServer, Zone
from tests.trust.conftest import SenderKey, arc_seal, dkimpy_sign, mail, publish, trust_site

ALICE = ("example", "alice")


def _send(port: int, data: bytes, sender: str, rcpts: list[str] | None) -> object:
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
        s.ehlo("mta.sender.test")
        return s.sendmail(sender, rcpts or ["alice@example.test"], data)


async def send(
    port: int, data: bytes, sender: str = "sam@sender.test", rcpts: list[str] | None = None
) -> object:
    """smtplib in a thread: the server runs in this test's event loop."""
    return await asyncio.to_thread(_send, port, data, sender, rcpts)


async def refused(port: int, data: bytes, sender: str = "sam@sender.test") -> tuple[int, str]:
    with pytest.raises(smtplib.SMTPDataError) as info:
        await send(port, data, sender)
    return info.value.smtp_code, info.value.smtp_error.decode()


def delivered(data_root: Path, folder: str = "") -> list[email.message.EmailMessage]:
    base = data_root / "postoffices" / "example" / "alice" / folder
    files = sorted([*(base / "new").glob("*"), *(base / "cur").glob("*")])
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def auth_results(msg: email.message.EmailMessage) -> str:
    values = [
        v for v in msg.get_all("Authentication-Results", []) if v.startswith("mx.example.test")
    ]
    assert len(values) == 1, msg.get_all("Authentication-Results")
    return " ".join(str(values[0]).split())


@pytest.fixture
def sender_zone(zone: Zone, test_keys: list[SenderKey]) -> Zone:
    """sender.test: SPF for 127.0.0.1, a DKIM key (s1), DMARC p=reject."""
    zone.txt("sender.test", "v=spf1 ip4:127.0.0.1 -all")
    zone.txt("mta.sender.test", "v=spf1 a -all")
    zone.a("mta.sender.test", "127.0.0.1")
    publish(zone, "s1", "sender.test", test_keys[0].rsa)
    zone.txt("_dmarc.sender.test", "v=DMARC1; p=reject; rua=mailto:d@sender.test")
    return zone


async def test_signed_message_verifies_and_gets_one_authentication_results(
    tmp_path: Path, dns: DnsServer, sender_zone: Zone, test_keys: list[SenderKey]
) -> None:
    site = trust_site(tmp_path, dns)
    data = dkimpy_sign(mail(), "sender.test", test_keys[0])
    async with running(site, tmp_path / "data") as server:
        await send(server.port("smtp"), data)
        await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))
    (msg,) = delivered(tmp_path / "data")
    ar = auth_results(msg)
    assert "spf=pass" in ar and "smtp.mailfrom=sam@sender.test" in ar
    assert "spf=pass" in ar.split("smtp.mailfrom")[1] and "smtp.helo=mta.sender.test" in ar
    assert "dkim=pass" in ar and "header.d=sender.test header.s=s1" in ar
    assert "dmarc=pass (p=reject) header.from=sender.test" in ar
    assert "arc=none" in ar


async def test_body_changed_after_signing_fails_dkim_and_p_reject_refuses(
    tmp_path: Path, dns: DnsServer, sender_zone: Zone, test_keys: list[SenderKey]
) -> None:
    sender_zone.records.pop(("sender.test", "TXT"))
    sender_zone.txt("sender.test", "v=spf1 ip4:192.0.2.1 -all")  # SPF fails too
    site = trust_site(tmp_path, dns)
    data = dkimpy_sign(mail(), "sender.test", test_keys[0]).replace(
        b"Hello Alice", b"Hello Mallory"
    )
    async with running(site, tmp_path / "data") as server:
        code, text = await refused(server.port("smtp"), data)
    assert code == 550
    assert text.startswith(replies.S550_DMARC_REJECT.format(domain="sender.test", why="x")[4:40])
    assert "p=reject" in text and "no aligned DKIM signature or SPF pass" in text
    assert maildir_files(tmp_path / "data", *ALICE) == []


async def test_p_reject_downgraded_per_domain_goes_to_junk(
    tmp_path: Path, dns: DnsServer, sender_zone: Zone, test_keys: list[SenderKey]
) -> None:
    sender_zone.records.pop(("sender.test", "TXT"))
    site = trust_site(
        tmp_path,
        dns,
        domains={"example.test": {"authentication": {"dmarc_reject": "quarantine"}}},
    )
    async with running(site, tmp_path / "data") as server:
        await send(server.port("smtp"), mail(subject="unsigned"))
        await wait_for(lambda: delivered(tmp_path / "data", ".Junk"))
    assert delivered(tmp_path / "data") == []  # not in the inbox
    junk = tmp_path / "data" / "postoffices" / "example" / "alice" / ".Junk"
    assert (junk / "maildirfolder").exists()  # Maildir++ subfolder
    (msg,) = delivered(tmp_path / "data", ".Junk")
    assert "dmarc=fail (p=reject; quarantined) header.from=sender.test" in auth_results(msg)


@pytest.mark.parametrize(
    ("action", "junk", "tagged"),
    [("junk", True, False), ("tag", False, True), ("both", True, True)],
)
async def test_p_quarantine_junk_folder_or_subject_tag(
    tmp_path: Path, dns: DnsServer, zone: Zone, action: str, junk: bool, tagged: bool
) -> None:
    zone.txt("_dmarc.sender.test", "v=DMARC1; p=quarantine")
    site = trust_site(tmp_path, dns, auth={"dmarc_quarantine": action})
    async with running(site, tmp_path / "data") as server:
        await send(server.port("smtp"), mail(subject="cheap pills"))
        await wait_for(
            lambda: (
                maildir_files(tmp_path / "data", *ALICE) or delivered(tmp_path / "data", ".Junk")
            )
        )
    (msg,) = delivered(tmp_path / "data", ".Junk" if junk else "")
    assert (str(msg["Subject"]) == "[SPAM] cheap pills") is tagged
    assert "dmarc=fail (p=quarantine; quarantined)" in auth_results(msg)


async def test_p_none_is_delivered_and_marked(tmp_path: Path, dns: DnsServer, zone: Zone) -> None:
    zone.txt("_dmarc.sender.test", "v=DMARC1; p=none")
    site = trust_site(tmp_path, dns)
    async with running(site, tmp_path / "data") as server:
        await send(server.port("smtp"), mail())
        await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))
    (msg,) = delivered(tmp_path / "data")
    ar = auth_results(msg)
    assert "spf=none" in ar and "dkim=none" in ar and "dmarc=fail (p=none)" in ar


@pytest.mark.parametrize(("adkim", "passes"), [("r", True), ("s", False)])
async def test_dkim_alignment_relaxed_and_strict(
    tmp_path: Path, dns: DnsServer, zone: Zone, test_keys: list[SenderKey], adkim: str, passes: bool
) -> None:
    # Signed by a subdomain: the same organizational domain, not the same domain.
    publish(zone, "s1", "mail.sender.test", test_keys[1].rsa)
    zone.txt("_dmarc.sender.test", f"v=DMARC1; p=reject; adkim={adkim}")
    site = trust_site(tmp_path, dns)
    data = dkimpy_sign(mail(), "mail.sender.test", test_keys[1])
    async with running(site, tmp_path / "data") as server:
        if passes:
            await send(server.port("smtp"), data)
            await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))
            ar = auth_results(delivered(tmp_path / "data")[0])
            assert "dkim=pass" in ar and "dmarc=pass" in ar
        else:
            code, text = await refused(server.port("smtp"), data)
            assert code == 550 and "DMARC" in text


@pytest.mark.parametrize(("aspf", "passes"), [("r", True), ("s", False)])
async def test_spf_alignment_relaxed_and_strict(
    tmp_path: Path, dns: DnsServer, zone: Zone, aspf: str, passes: bool
) -> None:
    zone.txt("bounces.sender.test", "v=spf1 ip4:127.0.0.0/8 -all")
    zone.txt("_dmarc.sender.test", f"v=DMARC1; p=reject; aspf={aspf}")
    site = trust_site(tmp_path, dns)
    async with running(site, tmp_path / "data") as server:
        if passes:
            await send(server.port("smtp"), mail(), sender="b@bounces.sender.test")
            await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))
            ar = auth_results(delivered(tmp_path / "data")[0])
            assert "spf=pass" in ar and "dmarc=pass" in ar
        else:
            code, _ = await refused(server.port("smtp"), mail(), sender="b@bounces.sender.test")
            assert code == 550


def list_forward(original: bytes) -> bytes:
    """What a mailing list does: a subject tag and a footer, which break the author's DKIM."""
    head, body = original.split(b"\r\n\r\n", 1)
    head = head.replace(b"Subject: hello", b"Subject: [friends] hello")
    return head + b"\r\n\r\n" + body + b"-- \r\nfriends mailing list\r\n"


@pytest.mark.parametrize("trusted", [True, False])
async def test_arc_chain_sealed_by_a_forwarding_list(
    tmp_path: Path, dns: DnsServer, zone: Zone, test_keys: list[SenderKey], trusted: bool
) -> None:
    publish(zone, "s1", "author.test", test_keys[0].rsa)
    zone.txt("_dmarc.author.test", "v=DMARC1; p=reject")
    publish(zone, "arc", "lists.test", test_keys[2].rsa)
    zone.txt("lists.test", "v=spf1 ip4:127.0.0.1 -all")
    signed = dkimpy_sign(mail(from_="Ann <ann@author.test>"), "author.test", test_keys[0])
    # The list verified the author on arrival, then changed the message and sealed it.
    sealed = arc_seal(
        list_forward(signed), "lists.test", test_keys[2], "dkim=pass header.d=author.test; arc=none"
    )
    auth = {"trusted_arc_sealers": ["lists.test"]} if trusted else {}
    site = trust_site(tmp_path, dns, auth=auth)
    async with running(site, tmp_path / "data") as server:
        if not trusted:
            code, text = await refused(
                server.port("smtp"), sealed, sender="friends-bounces@lists.test"
            )
            assert code == 550 and "author.test" in text
            return
        await send(server.port("smtp"), sealed, sender="friends-bounces@lists.test")
        await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))
    ar = auth_results(delivered(tmp_path / "data")[0])
    assert "dkim=fail" in ar and "header.d=author.test" in ar, ar
    assert "arc=pass (i=1 sealed by lists.test)" in ar
    assert "dmarc=fail (p=reject; overridden: ARC sealed by lists.test)" in ar


async def test_spoofed_local_from_is_refused(tmp_path: Path, dns: DnsServer) -> None:
    site = trust_site(tmp_path, dns)
    forged = mail(from_="Alice <alice@example.test>", to="bob@example.test", subject="wire money")
    async with running(site, tmp_path / "data") as server:
        with pytest.raises(smtplib.SMTPDataError) as info:
            await send(
                server.port("smtp"), forged, sender="alice@example.test", rcpts=["bob@example.test"]
            )
    assert info.value.smtp_code == 550
    assert (
        info.value.smtp_error.decode() == replies.S550_LOCAL_SPOOF.format(domain="example.test")[4:]
    )


async def test_local_from_from_a_privileged_ip_or_whitelist_is_accepted(
    tmp_path: Path, dns: DnsServer
) -> None:
    site = trust_site(tmp_path, dns, site={"relay": {"privileged_ips": ["127.0.0.1"]}})
    async with running(site, tmp_path / "data") as server:
        await send(
            server.port("smtp"), mail(from_="alice@example.test"), sender="alice@example.test"
        )
        await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))


async def test_whitelisted_client_is_not_checked_at_all(tmp_path: Path, dns: DnsServer) -> None:
    site = trust_site(tmp_path, dns, site={"security": {"ip_whitelist": ["127.0.0.1"]}})
    async with running(site, tmp_path / "data") as server:
        await send(
            server.port("smtp"), mail(from_="alice@example.test"), sender="alice@example.test"
        )
        await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))
    (msg,) = delivered(tmp_path / "data")
    assert msg.get_all("Authentication-Results") is None
    assert dns.zone.queries == []  # SPF exempt, as security.ip_whitelist promises


async def test_forged_authentication_results_for_our_host_are_removed(
    tmp_path: Path, dns: DnsServer, sender_zone: Zone, test_keys: list[SenderKey]
) -> None:
    forged = (
        "Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\n"
        "Authentication-Results: MX.EXAMPLE.TEST (comment) 1; spf=pass\r\n"
        "Authentication-Results: other.test; spf=pass smtp.mailfrom=sender.test\r\n"
    )
    data = dkimpy_sign(mail(extra=forged), "sender.test", test_keys[0])
    site = trust_site(tmp_path, dns)
    async with running(site, tmp_path / "data") as server:
        await send(server.port("smtp"), data)
        await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))
    (msg,) = delivered(tmp_path / "data")
    values = [str(v) for v in msg.get_all("Authentication-Results")]
    assert len(values) == 2  # ours and other.test's
    assert any(v.startswith("other.test") for v in values)
    assert "bank.test" not in " ".join(values)


async def test_forged_authentication_results_removed_when_verification_is_off(
    tmp_path: Path, dns: DnsServer
) -> None:
    site = trust_site(tmp_path, dns, auth={"verify": False})
    data = mail(extra="Authentication-Results: mx.example.test; dmarc=pass\r\n")
    async with running(site, tmp_path / "data") as server:
        await send(server.port("smtp"), data)
        await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))
    assert delivered(tmp_path / "data")[0].get_all("Authentication-Results") is None


async def test_dmarc_dns_failure_is_a_temporary_refusal(
    tmp_path: Path, dns: DnsServer, zone: Zone
) -> None:
    zone.servfail("_dmarc.sender.test")
    site = trust_site(tmp_path, dns)
    async with running(site, tmp_path / "data") as server:
        code, text = await refused(server.port("smtp"), mail())
    assert (code, text) == (451, replies.S451_AUTH_TEMPERROR[4:])


async def test_slow_dns_is_cut_by_the_time_budget(
    tmp_path: Path, dns: DnsServer, zone: Zone
) -> None:
    zone.txt("_dmarc.sender.test", "v=DMARC1; p=reject")
    zone.slow("_dmarc.sender.test", 30)
    site = trust_site(tmp_path, dns, auth={"time_budget_seconds": 0.5})
    async with running(site, tmp_path / "data") as server:
        import time

        started = time.monotonic()
        code, _ = await refused(server.port("smtp"), mail())
        assert code == 451 and time.monotonic() - started < 5


async def test_submission_is_not_checked(tmp_path: Path, dns: DnsServer) -> None:
    site = trust_site(tmp_path, dns)
    async with running(site, tmp_path / "data") as server:

        def submit() -> None:
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=15) as s:
                s.login("alice@example.test", "alice-secret")
                s.sendmail(
                    "alice@example.test",
                    ["bob@example.test"],
                    mail(from_="alice@example.test", to="bob@example.test"),
                )

        await asyncio.to_thread(submit)
        await wait_for(lambda: maildir_files(tmp_path / "data", "example", "bob"))
    bob = tmp_path / "data" / "postoffices" / "example" / "bob" / "new"
    (path,) = list(bob.glob("*"))
    assert b"Authentication-Results" not in path.read_bytes()


async def test_hostile_authentication_headers_never_become_a_451(
    tmp_path: Path, dns: DnsServer, zone: Zone
) -> None:
    zone.txt("sender.test", "v=spf1 ip4:127.0.0.1 exists:%{l1r+-}.x.test a:/0//0 ~all")
    zone.txt("junk._domainkey.sender.test", "v=DKIM1; k=rsa; p=!!!notbase64")
    zone.txt("_dmarc.sender.test", "v=DMARC1; p=none; pct=abc; adkim=q")
    garbage = (
        "DKIM-Signature: v=1; a=rsa-sha256; d=sender.test; s=junk; h=from; bh=@@; b=%%\r\n"
        "DKIM-Signature: v=1; a=rsa-sha1; d=sender.test; s=junk; h=to; l=99999; bh=; b=\r\n"
        "DKIM-Signature: ;;;===;\r\n"
        "DKIM-Signature: v=1; d=\x7f\x01.test; s=\r\n"
        "ARC-Seal: i=notanumber; a=rsa-sha256; cv=none; d=x.test; s=s; b=AAAA\r\n"
        "ARC-Message-Signature: i=1; garbage\r\n"
        "ARC-Authentication-Results: i=1; x.test; none\r\n"
    )
    site = trust_site(tmp_path, dns)
    async with running(site, tmp_path / "data") as server:
        await send(server.port("smtp"), mail(extra=garbage))
        await wait_for(lambda: maildir_files(tmp_path / "data", *ALICE))
    ar = auth_results(delivered(tmp_path / "data")[0])
    assert "dkim=permerror" in ar and "dmarc=" in ar
