"""Postfix as a real remote peer: our outbound client against a real MTA's smtpd.

A private Postfix (bench/peers/postfix.py: its own config dir, queue and
Maildirs, loopback only, DNS off) accepts mail for peer.test. The test DNS
server points peer.test's MX at 127.0.0.1 and delivery.remote_port at
Postfix's port. Postfix must store what we send byte for byte in the body,
and its own refusal (unknown user) must come back in our DSN verbatim.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.peers import PeerUnavailable
from bench.peers.postfix import PostfixPeer
from bench.util import REGISTRY
from tests.outbound.conftest import Harness, dsn_parts, message
from tests.support import maildir_files, running, wait_for, write_site
from tests.support_smtp import free_port

pytestmark = [pytest.mark.tools, pytest.mark.slow]


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixPeer]:
    if os.geteuid() != 0 or not os.access("/usr/sbin/postfix", os.X_OK):
        pytest.skip("a private Postfix needs root and tests/setup-tools.sh")
    # Under /var/tmp, not pytest's tmp: Postfix's virtual agent runs as vmail
    # and must be able to walk into the Maildir tree.
    root = Path(f"/var/tmp/mailplat-test/postfix-{os.getpid()}")
    peer = PostfixPeer(port=free_port(), users=["bob"], domain="peer.test", root=root)
    try:
        peer.start()
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    # This fixture stops its own peer; the bench registry must not hold it.
    REGISTRY.forget("postfix")
    try:
        yield peer
    finally:
        peer.stop()
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.parent.rmdir()  # only when no other run is using it


def to_postfix(h: Harness, peer: PostfixPeer) -> None:
    h.configure({"delivery": {"remote_port": peer.port}})
    h.zone.mx("peer.test", (10, "mx.peer.test"))
    h.zone.a("mx.peer.test", "127.0.0.1")


def delivered(peer: PostfixPeer, user: str) -> list[Path]:
    return sorted((peer.maildir(user) / "new").glob("*"))


async def test_postfix_receives_what_we_send(harness: Harness, postfix: PostfixPeer) -> None:
    to_postfix(harness, postfix)
    body = "".join(f"line {n}\r\n" for n in range(300)) + ".starts with a dot\r\n"
    await harness.queue(["bob@peer.test"], data=message(subject="to-postfix", body=body))
    await harness.outbound.drain()
    assert harness.queued() == [] and harness.notices() == []
    await wait_for(lambda: len(delivered(postfix, "bob")) == 1, timeout=30)
    stored = delivered(postfix, "bob")[0].read_bytes()
    assert b"Subject: to-postfix" in stored
    assert stored.split(b"\n\n", 1)[1] == body.replace("\r\n", "\n").encode()


async def test_postfix_refusal_comes_back_in_the_dsn(
    harness: Harness, postfix: PostfixPeer
) -> None:
    to_postfix(harness, postfix)
    await harness.queue(["nobody@peer.test"])
    await harness.outbound.drain()
    [(_, ndr)] = harness.notices()
    _, [rcpt], _ = dsn_parts(ndr)
    assert rcpt["status"] == "5.1.1"
    assert rcpt["diagnostic-code"].startswith("smtp; 550 5.1.1 <nobody@peer.test>")
    assert "User unknown" in rcpt["diagnostic-code"]
    assert rcpt["remote-mta"] == "dns; mx.peer.test"


async def test_a_bounce_from_postfix_reaches_our_user(tmp_path: Path) -> None:
    """A real MTA's DSN (MAIL FROM:<>) is accepted and lands in the sender's mailbox.

    Postfix takes a message from alice@example.test for a domain whose server
    refuses connections, gives up at once (maximal_queue_lifetime = 0), and
    sends the DSN to example.test, which it routes to our SMTP listener.
    """
    if os.geteuid() != 0 or not os.access("/usr/sbin/postfix", os.X_OK):
        pytest.skip("a private Postfix needs root and tests/setup-tools.sh")
    site = write_site(tmp_path)
    data = tmp_path / "data"
    async with running(site, data) as server:
        root = Path(f"/var/tmp/mailplat-test/postfix-bounce-{os.getpid()}")
        peer = PostfixPeer(
            port=free_port(),
            users=["bob"],
            domain="peer.test",
            root=root,
            transport={
                "dead.peer.test": f"smtp:[127.0.0.1]:{free_port()}",
                "example.test": f"smtp:[127.0.0.1]:{server.port('smtp')}",
            },
            extra_main_cf=(
                "relay_domains = dead.peer.test\n"
                "maximal_queue_lifetime = 0\nbounce_queue_lifetime = 0\n"
            ),
        )
        try:
            peer.start()
        except PeerUnavailable as exc:
            pytest.skip(str(exc))
        REGISTRY.forget("postfix")
        try:

            def submit() -> None:
                with smtplib.SMTP("127.0.0.1", peer.port, timeout=20) as s:
                    s.sendmail(
                        "alice@example.test",
                        ["nobody@dead.peer.test"],
                        b"Subject: doomed\r\nMessage-ID: <doomed@example.test>\r\n\r\nhi\r\n",
                    )

            await asyncio.to_thread(submit)
            await wait_for(
                lambda: any(
                    b"multipart/report" in f.read_bytes()
                    for f in maildir_files(data, "example", "alice")
                ),
                timeout=60,
            )
        finally:
            peer.stop()
            shutil.rmtree(root, ignore_errors=True)
    [dsn] = maildir_files(data, "example", "alice")
    raw = dsn.read_bytes()
    assert raw.startswith(b"Return-Path: <>\n")
    assert b"doomed@example.test" in raw and b"nobody@dead.peer.test" in raw
    assert b"by mx.example.test (mailplat) with ESMTP" in raw
