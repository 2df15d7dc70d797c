"""fsync before 250, proven with strace, and the flushes a message costs.

A SIGKILL cannot prove durability (the page cache survives a process kill),
so the real `mailplat serve` runs under strace (RELIABILITY.md, "Harness
techniques") while clients send messages on several concurrent sessions.
For every `250 ... queued as ID` the server sent, the strace log must show,
in this order: the journal write holding ID's ACCEPT frame, then a completed
fdatasync of that journal segment, then the reply. With group commit one
fdatasync covers several replies; the rule still holds for each.

The same log counts the synchronous flushes (fsync and fdatasync) of the
whole accept-and-deliver path: at most two per message, as Postfix has (the
spool's shared fdatasync and the Maildir file's fsync; new/ folder fsyncs
are shared by every delivery in a window).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.e2e.serveproc import site_with_ports, wait_until
from tests.e2e.test_crash_durability import wait_port
from tests.support import maildir_files

pytestmark = pytest.mark.tools

SESSIONS = 4
PER_SESSION = 25

_LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\((\d+)<([^>]*)>)(.*)$")


def _strace() -> str:
    path = shutil.which("strace")
    assert path, "strace is not installed: run `make tools` (tests/setup-tools.sh)"
    return path


def _send(port: int, n: int, tag: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        for i in range(n):
            s.sendmail(
                "someone@remote.test",
                ["alice@example.test"],
                f"Subject: {tag}-{i}\r\n\r\nbody {i}\r\n".encode(),
            )


def _events(text: str) -> list[tuple[str, str, str]]:
    """(syscall, fd path, rest of the line) for each completed call, in completion order.

    strace -f prints a call cut by another thread as `<unfinished ...>` and its
    end as `<... name resumed>`; the end is when it completed.
    """
    started: dict[tuple[str, str], tuple[str, str]] = {}
    out: list[tuple[str, str, str]] = []
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        pid, resumed, name, _fd, path, rest = m.groups()
        if resumed:
            begun = started.pop((pid, resumed), None)
            if begun is not None:
                out.append((resumed, begun[0], begun[1] + rest))
            continue
        if rest.endswith("<unfinished ...>"):
            started[(pid, name)] = (path, rest)
            continue
        out.append((name, path, rest))
    return out


def test_every_250_follows_the_fdatasync_of_its_accept(tmp_path: Path) -> None:
    strace = _strace()
    site, ports = site_with_ports(tmp_path, site={"logging": {"w3c": False, "activity": False}})
    data = tmp_path / "data"
    trace = tmp_path / "strace.out"
    cmd = [
        strace,
        "-f",
        "-y",
        "-s",
        "1000000",
        "-e",
        "trace=write,writev,sendto,sendmsg,fsync,fdatasync",
        "-o",
        str(trace),
        sys.executable,
        "-m",
        "mailplat",
        "serve",
        str(site),
        "--data",
        str(data),
    ]
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(ports["smtp"], proc)
        threads = [
            threading.Thread(target=_send, args=(ports["smtp"], PER_SESSION, f"s{n}"))
            for n in range(SESSIONS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        total = SESSIONS * PER_SESSION
        wait_until(
            lambda: len(maildir_files(data, "example", "alice")) == total,
            timeout=60,
            what="every message delivered",
        )
        # Let the last window of deliveries finish (their folders synced, records done).
        wait_until(lambda: "delivery" in (tmp_path / "serve.log").read_text(), timeout=5)
    finally:
        # Stop the server itself (strace's child); strace ends with it.
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGTERM)
        proc.wait(timeout=30)
    events = _events(trace.read_text(errors="replace"))

    replies: dict[str, int] = {}
    accepts: dict[str, int] = {}
    syncs: list[tuple[int, str]] = []
    flushes = 0
    for i, (name, path, rest) in enumerate(events):
        if name in ("fsync", "fdatasync") and rest.rstrip().endswith("= 0"):
            flushes += 1
            if name == "fdatasync" and "/journal/" in path:
                syncs.append((i, path))
        elif name in ("write", "writev") and "/journal/" in path:
            for msg_id in re.findall(r'\{\\"id\\":\\"([0-9A-Z]{20})\\"', rest):
                accepts.setdefault(msg_id, i)
        elif name in ("write", "writev", "sendto", "sendmsg") and path.startswith(
            ("socket:", "TCP")
        ):
            for msg_id in re.findall(r"250 2\.0\.0 OK queued as ([0-9A-Z]{20})", rest):
                replies[msg_id] = i
    assert len(replies) == SESSIONS * PER_SESSION, f"saw {len(replies)} replies"
    for msg_id, replied_at in replies.items():
        written_at = accepts.get(msg_id)
        assert written_at is not None, f"no journal write of {msg_id} before its 250"
        assert written_at < replied_at, f"{msg_id}: 250 before its ACCEPT was written"
        synced = [i for i, _ in syncs if written_at < i < replied_at]
        assert synced, f"{msg_id}: 250 sent before any fdatasync covered its ACCEPT"
    per_message = flushes / len(replies)
    assert per_message <= 2.0, f"{per_message:.2f} synchronous flushes per message"
