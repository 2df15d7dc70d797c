"""Every RCPT and routing rule of issue 3 over a real SMTP session.

Catchall (with the original recipient in the catch-all header), the abuse
target, redirect with keep-copy, disabled domain and mailbox,
blocked recipients, sender blacklists, POP-before-SMTP relaying, and quota
(452 when full at RCPT, a DSN when a message would overflow it).
"""

from __future__ import annotations

import asyncio
import poplib
import smtplib
from email import message_from_bytes
from pathlib import Path
from typing import Any

from tests.support import base_postoffice, maildir_files, running, wait_for, write_site


def _po() -> dict[str, Any]:
    po = base_postoffice()
    po["domains"]["example.test"].update(
        {"catchall": "bob", "abuse": "alice", "sender_blacklist": ["spam.test"]}
    )
    po["domains"]["closed.test"] = {"disabled": True}
    po["mailboxes"]["carol"] = {
        "password": po["mailboxes"]["bob"]["password"],
        "redirect": {"to": ["alice@example.test"], "keep_copy": True},
    }
    po["mailboxes"]["gone"] = {"password": po["mailboxes"]["bob"]["password"], "disabled": True}
    po["mailboxes"]["tiny"] = {"password": po["mailboxes"]["bob"]["password"], "quota_mb": 1}
    return po


def rcpt(port: int, to: str, sender: str = "x@remote.test") -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail(sender)
        code, text = s.rcpt(to)
        return code, text.decode()


def send(port: int, to: str, body: bytes = b"hi\r\n", sender: str = "x@remote.test") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail(sender, [to], b"Subject: rules\r\n\r\n" + body)


async def test_routing_rules_over_smtp(tmp_path: Path) -> None:
    site = write_site(
        tmp_path,
        postoffices={"example": _po()},
        site={"smtp": {"blocked_recipients": ["blocked@example.test"]}},
    )
    data = tmp_path / "data"
    async with running(site, data) as server:
        port = server.port("smtp")
        # Catchall: an unknown address lands with bob, the original recipient recorded.
        await asyncio.to_thread(send, port, "nobody@example.test")
        await wait_for(lambda: len(maildir_files(data, "example", "bob")) == 1)
        caught = message_from_bytes(maildir_files(data, "example", "bob")[0].read_bytes())
        assert caught["X-Original-To"] == "nobody@example.test"
        # abuse@ goes to its target; a redirect keeps a copy and forwards.
        await asyncio.to_thread(send, port, "abuse@example.test")
        await asyncio.to_thread(send, port, "carol@example.test")
        await wait_for(lambda: len(maildir_files(data, "example", "alice")) == 2)
        await wait_for(lambda: len(maildir_files(data, "example", "carol")) == 1)
        # Refusals with their codes.
        assert (await asyncio.to_thread(rcpt, port, "x@closed.test"))[0] == 550
        assert (await asyncio.to_thread(rcpt, port, "gone@example.test"))[0] == 550
        assert (await asyncio.to_thread(rcpt, port, "blocked@example.test"))[0] == 550
        code, text = await asyncio.to_thread(rcpt, port, "alice@example.test", "a@spam.test")
        assert code == 550 and "5.7.1" in text
        # Relay: refused, then allowed for some minutes after a POP3 login from this IP.
        code, text = await asyncio.to_thread(rcpt, port, "friend@far.test")
        assert code in (550, 554) and "5.7.1" in text


async def test_pop_before_smtp_allows_relay(tmp_path: Path) -> None:
    site = write_site(
        tmp_path,
        postoffices={"example": _po()},
        site={"relay": {"pop_before_smtp": {"enabled": True, "minutes": 5}}},
    )
    data = tmp_path / "data"
    async with running(site, data) as server:
        port = server.port("smtp")
        assert (await asyncio.to_thread(rcpt, port, "friend@far.test"))[0] in (550, 554)

        def pop_login() -> None:
            p = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
            p.user("alice@example.test")
            p.pass_("alice-secret")
            p.quit()

        await asyncio.to_thread(pop_login)
        assert (await asyncio.to_thread(rcpt, port, "friend@far.test"))[0] == 250
    # Remembered across a restart (runtime state under <data>/state/).
    async with running(site, data) as server:
        assert (await asyncio.to_thread(rcpt, server.port("smtp"), "friend@far.test"))[0] == 250


def transact(port: int, rcpts: list[str], body: bytes, size: int | None) -> list[tuple[int, str]]:
    """MAIL (with SIZE= when given), every RCPT, then DATA when one was accepted."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        options = [f"SIZE={size}"] if size is not None else []
        s.mail("alice@example.test", options)
        codes = [(c, t.decode()) for c, t in (s.rcpt(r) for r in rcpts)]
        if any(c == 250 for c, _ in codes):
            c, t = s.data(b"Subject: rules\r\n\r\n" + body)
            codes.append((c, t.decode()))
        return codes


async def test_quota_is_checked_before_data_and_overflow_bounces(tmp_path: Path) -> None:
    site = write_site(tmp_path, postoffices={"example": _po()})
    data = tmp_path / "data"
    big = (b"x" * 998 + b"\r\n") * 700  # about 0.7 MB
    async with running(site, data) as server:
        port = server.port("smtp")
        await asyncio.to_thread(send, port, "tiny@example.test", big, "alice@example.test")
        await wait_for(lambda: len(maildir_files(data, "example", "tiny")) == 1)
        # SIZE= over what is left of the 1 MB quota: 452 at RCPT, before any data.
        [(code, text)] = await asyncio.to_thread(
            transact, port, ["tiny@example.test"], big, len(big)
        )
        assert code == 452 and text.startswith("4.2.2"), text
        # SIZE= over the whole quota can never fit: 552 5.2.2.
        [(code, text)] = await asyncio.to_thread(
            transact, port, ["tiny@example.test"], big, 2 * 1024 * 1024
        )
        assert code == 552 and text.startswith("5.2.2"), text
        # No SIZE=, one recipient: refused at the end of DATA, not accepted and bounced.
        [(rc, _), (code, text)] = await asyncio.to_thread(
            transact, port, ["tiny@example.test"], big, None
        )
        assert rc == 250 and code == 552 and text.startswith("5.2.2"), text
        # Two recipients: one reply covers both, so the full one gets a DSN instead.
        codes = await asyncio.to_thread(
            transact, port, ["tiny@example.test", "bob@example.test"], big, None
        )
        assert [c for c, _ in codes] == [250, 250, 250]
        await wait_for(
            lambda: any(
                b"multipart/report" in f.read_bytes()
                for f in maildir_files(data, "example", "alice")
            )
        )
        await wait_for(lambda: len(maildir_files(data, "example", "bob")) == 1)
        assert len(maildir_files(data, "example", "tiny")) == 1
    # A mailbox already at its quota (here filled by another tool) gets 452 at RCPT.
    new = data / "postoffices" / "example" / "tiny" / "new"
    (new / "1700000000.M1P1.filler").write_bytes(b"z" * (1024 * 1024))
    async with running(site, data) as server:
        code, text = await asyncio.to_thread(rcpt, server.port("smtp"), "tiny@example.test")
        assert code == 452 and "4.2.2" in text
