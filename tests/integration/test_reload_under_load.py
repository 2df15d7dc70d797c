"""Twenty reloads while clients send: no failed transaction, no lost message.

Each reload flips where flip@example.test goes (alice <-> bob); some reloads
also move the POP3 listener or renew the TLS certificate. Senders over real
sockets (smtplib, in threads) record when each transaction began and ended.
Afterwards every accepted message is in a Maildir exactly where the config
live for its whole transaction sent it (messages that straddle a reload may
land with either config, but never nowhere and never twice).
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from email import message_from_bytes
from pathlib import Path

from mailplat.runtime.server import Server
from mailplat.runtime.tls import make_self_signed
from tests.e2e.test_crash_durability import free_port
from tests.support import (
    base_postoffice,
    base_site,
    deep_merge,
    dump,
    maildir_files,
    running,
    wait_for,
    write_site,
)

RELOADS = 20
SENDERS = 4


def flip_to(site: Path, member: str) -> None:
    po = base_postoffice()
    po["groups"]["flip"] = {"address": "flip@example.test", "members": [f"{member}@example.test"]}
    dump(site / "postoffices" / "example.yaml", po)


async def test_twenty_reloads_under_load(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    flip_to(site, "alice")
    data = tmp_path / "data"
    async with running(site, data) as server:
        await _run(server, site, data, tmp_path)


async def _run(server: Server, site: Path, data: Path, tmp_path: Path) -> None:
    port = server.port("smtp")
    stop = threading.Event()
    sent: list[tuple[str, float, float]] = []  # message id, MAIL sent at, DATA answered at
    failures: list[str] = []
    lock = threading.Lock()

    def sender(n: int) -> None:
        count = 0
        smtp: smtplib.SMTP | None = None
        while not stop.is_set():
            count += 1
            msg_id = f"<{n}.{count}@load.test>"
            try:
                if smtp is None or count % 5 == 0:  # mix long sessions and fresh ones
                    if smtp is not None:
                        smtp.quit()
                    smtp = smtplib.SMTP("127.0.0.1", port, timeout=20)
                    smtp.ehlo("load.test")
                began = time.monotonic()
                smtp.sendmail(
                    "load@remote.test",
                    ["flip@example.test"],
                    f"Message-ID: {msg_id}\r\nSubject: load\r\n\r\nbody {n} {count}\r\n".encode(),
                )
                with lock:
                    sent.append((msg_id, began, time.monotonic()))
            except (smtplib.SMTPException, OSError) as exc:
                with lock:
                    failures.append(f"{msg_id}: {exc!r}")
                smtp = None
        if smtp is not None:
            smtp.quit()

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(SENDERS)]
    for t in threads:
        t.start()
    # (generation live from, live until, member)
    periods: list[tuple[float, float, str]] = []
    live_from, member = time.monotonic(), "alice"
    alternate: int | None = None
    try:
        await asyncio.sleep(0.2)
        for i in range(RELOADS):
            nxt = "bob" if member == "alice" else "alice"
            flip_to(site, nxt)
            if i % 7 == 3:  # a listener change: POP3 gets an alternate port, then loses it
                alternate = None if alternate else free_port()
                extra = {"listeners": {"pop3": {"alternate_port": alternate}}}
                dump(site / "site.yaml", deep_merge(base_site(tmp_path / "tls"), extra))
            if i % 7 == 5:  # a renewed certificate
                make_self_signed(tmp_path / "tls", "mx.example.test")
            called = time.monotonic()
            periods.append((live_from, called, member))
            result = await server.reload(f"load-{i}")
            assert result["ok"], result
            live_from, member = time.monotonic(), nxt
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.to_thread(lambda: [t.join(30) for t in threads])
    periods.append((live_from, time.monotonic(), member))
    assert not failures, failures[:5]
    assert len(sent) > RELOADS * 2

    def delivered() -> dict[str, list[str]]:
        where: dict[str, list[str]] = {}
        for box in ("alice", "bob"):
            for f in maildir_files(data, "example", box):
                mid = message_from_bytes(f.read_bytes())["Message-ID"]
                if mid and mid.endswith("@load.test>"):
                    where.setdefault(mid, []).append(box)
        return where

    await wait_for(lambda: len(delivered()) == len(sent), timeout=60)
    where = delivered()
    strict = 0
    for msg_id, began, ended in sent:
        assert len(where[msg_id]) == 1, (msg_id, where[msg_id])
        for start, end, box in periods:
            if start <= began and ended <= end:
                assert where[msg_id] == [box], (msg_id, box, where[msg_id])
                strict += 1
    assert strict > len(sent) // 2  # most messages fell inside one generation
    # The listener and certificate changes took effect too.
    assert alternate is None or any(b.port == alternate for b in server.bound())
