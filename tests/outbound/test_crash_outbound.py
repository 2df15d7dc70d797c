"""kill -9 during outbound delivery loses nothing (RELIABILITY.md §2).

A real `mailplat serve` child relays to a loopback MX found through the test
DNS server. It is killed (a) by the named fault point right after the
remote's 250, before the spool records anything: after the restart the
message is sent again, one duplicate at most; and (b) by SIGKILL while the
remote stalls before answering the end of DATA: after the restart the
message is delivered once. Either way the smtp queue ends empty.
"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_crash_durability import free_port, wait_port
from tests.support import write_site
from tests.support_dns import DnsServer
from tests.support_smtp import Receiver, Script
from tests.support_spool import queued

pytestmark = pytest.mark.slow


def make_site(tmp_path: Path, dns: DnsServer, smtp_port: int, rx_port: int) -> Path:
    dns.zone.mx("dest.test", (10, "mx1.dest.test"))
    dns.zone.a("mx1.dest.test", "127.0.0.2")
    off = {"enabled": False}
    return write_site(
        tmp_path,
        site={
            "server": {"dns_servers": [dns.address]},
            "listeners": {
                "smtp": {"bind": [f"127.0.0.1:{smtp_port}"]},
                "submission": off,
                "smtps": off,
                "pop3": off,
                "pop3s": off,
            },
            "relay": {"privileged_ips": ["127.0.0.1"]},
            "delivery": {"remote_port": rx_port, "remote_timeout_seconds": 10},
        },
        tls=False,
    )


def serve(site: Path, data: Path, fault: str | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MAILPLAT_FAULT"}
    if fault:
        env["MAILPLAT_FAULT"] = fault
    log = (data.parent / "serve.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "mailplat", "serve", str(site), "--data", str(data)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def send(port: int, subject: str) -> None:
    msg = (
        f"From: alice@example.test\r\nTo: bob@dest.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.test>\r\n\r\n" + "payload line\r\n" * 200
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail("alice@example.test", ["bob@dest.test"], msg)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def smtp_queue(data: Path) -> list[str]:
    return queued(data / "spool", "smtp")


async def test_kill9_after_the_remote_250_repeats_the_delivery_once(
    tmp_path: Path, dns: DnsServer
) -> None:
    port, rx_port = free_port(), free_port()
    site = make_site(tmp_path, dns, port, rx_port)
    data = tmp_path / "data"
    rx = await Receiver("127.0.0.2", rx_port).start()
    proc = serve(site, data, fault="outbound.remote-accepted:1")
    try:
        await asyncio.to_thread(wait_port, port, proc)
        await asyncio.to_thread(send, port, "crash-after-250")
        assert await asyncio.to_thread(proc.wait, 30) == 137
        assert len(rx.got) == 1  # the remote has it; our spool does not know yet
        assert len(smtp_queue(data)) == 1
        proc = serve(site, data)
        await asyncio.to_thread(wait_port, port, proc)
        got = await rx.wait(2, timeout=30)
    finally:
        await asyncio.to_thread(stop, proc)
        await rx.stop()
    assert len(got) == 2  # one duplicate, made in the crash window, never more
    assert got[0].data == got[1].data and b"Subject: crash-after-250" in got[0].data
    assert smtp_queue(data) == []
    log = (tmp_path / "serve.log").read_text()
    assert "outbound delivered" in log


async def test_kill9_while_the_remote_is_silent_delivers_after_restart(
    tmp_path: Path, dns: DnsServer
) -> None:
    port, rx_port = free_port(), free_port()
    site = make_site(tmp_path, dns, port, rx_port)
    data = tmp_path / "data"
    rx = await Receiver("127.0.0.2", rx_port, Script(stall_at="data")).start()
    proc = serve(site, data)
    try:
        await asyncio.to_thread(wait_port, port, proc)
        await asyncio.to_thread(send, port, "crash-mid-data")
        await asyncio.wait_for(rx.stalled.wait(), 30)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        assert len(smtp_queue(data)) == 1
        rx.script.stall_at = None
        proc = serve(site, data)
        await asyncio.to_thread(wait_port, port, proc)
        got = await rx.wait(1, timeout=30)
    finally:
        await asyncio.to_thread(stop, proc)
        await rx.stop()
    assert len(got) == 1 and b"Subject: crash-mid-data" in got[0].data
    assert smtp_queue(data) == []
