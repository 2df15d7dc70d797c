"""The default logs of a real `mailplat serve` are cheap: batched, yet complete.

- strace shows each log file written once per batch, not once per record;
- a clean stop (SIGTERM right after the last 250) loses no record;
- a record is on disk within a second of being logged, so a crash (kill -9)
  takes at most the last second.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import smtplib
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.serveproc import serve, site_with_ports, wait_until

# The seed's defaults, spelled out: all three files on.
LOGS = {"logging": {"w3c": True, "activity": True, "json": True}}


def _send(port: int, count: int) -> list[str]:
    """`count` messages on one SMTP session; the ids of their 250 replies."""
    ids = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        for i in range(count):
            s.mail("someone@remote.test")
            s.rcpt("alice@example.test")
            code, reply = s.data(f"Subject: batch {i}\r\n\r\nhello\r\n".encode())
            assert code == 250, reply
            m = re.fullmatch(r"2\.0\.0 OK queued as (\S+)", reply.decode())
            assert m, reply
            ids.append(m.group(1))
    return ids


def _accepted(logs: Path) -> set[str]:
    path = logs / "mailplat.jsonl"
    if not path.exists():
        return set()
    found = set()
    for line in path.read_text().splitlines():
        with_fields = json.loads(line)
        if with_fields.get("event") == "smtp accepted":
            found.add(with_fields["id"])
    return found


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_each_log_file_is_written_once_per_batch_not_per_record(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path, site=LOGS)
    data, trace = tmp_path / "data", tmp_path / "writes.strace"
    logs = data / "logs"
    with serve(site, data, ports["smtp"]) as proc:
        # -y names each descriptor's file, so the log files' writes can be counted.
        tracer = subprocess.Popen(
            ["strace", "-f", "-qq", "-y", "-e", "trace=write,writev", "-o", str(trace)]
            + ["-p", str(proc.pid)],
            stderr=subprocess.DEVNULL,
        )
        try:
            # Attached once the server's own writes show up (a session's replies).
            wait_until(
                lambda: (
                    bool(_send(ports["smtp"], 1))
                    and trace.exists()
                    and "write" in trace.read_text()
                ),
                what="strace attached",
            )
            ids = _send(ports["smtp"], 40)
            wait_until(lambda: set(ids) <= _accepted(logs), what="every message logged")
            wait_until(
                lambda: (logs / "activity.log").read_text().count("delivery ok") >= 41,
                what="every delivery logged",
            )
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
    writes = Counter(
        m.group(1) for m in re.finditer(r"\bwritev?\(\d+<[^>]*/(\w[\w.-]*)>", trace.read_text())
    )
    records = {
        name: sum(1 for line in (logs / name).read_text().splitlines() if not line.startswith("#"))
        for name in ("mailplat.jsonl", "activity.log", "smtp-w3c.log")
    }
    for name, lines in records.items():
        assert lines >= 120, (name, lines)  # 41 messages, at least three lines each
        # One write per record was the old way; a batch carries many.
        assert writes[name] * 4 <= lines, (name, writes[name], lines)


def test_clean_stop_loses_no_record(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path, site=LOGS)
    data = tmp_path / "data"
    with serve(site, data, ports["smtp"]) as proc:
        ids = _send(ports["smtp"], 30)
        proc.send_signal(signal.SIGTERM)  # at once: no waiting for the writer
        assert proc.wait(timeout=30) == 0
    assert set(ids) <= _accepted(data / "logs")
    w3c = (data / "logs" / "smtp-w3c.log").read_text()
    assert w3c.count(" DATA - 250") >= 30  # the 250 after each message's data


def test_a_record_is_on_disk_within_a_second(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path, site=LOGS)
    data = tmp_path / "data"
    with serve(site, data, ports["smtp"]) as proc:
        _send(ports["smtp"], 1)
        wait_until(lambda: bool(_accepted(data / "logs")), what="the writer's first batch")
        [msg_id] = _send(ports["smtp"], 1)
        replied = time.monotonic()
        wait_until(lambda: msg_id in _accepted(data / "logs"), timeout=1.0, what="the record")
        assert time.monotonic() - replied < 1.0
        proc.kill()  # what was written survives the crash
        proc.wait(timeout=30)
    assert msg_id in _accepted(data / "logs")
