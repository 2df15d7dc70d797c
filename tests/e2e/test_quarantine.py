"""Damaged spool files are quarantined once, the sender is told, the admin sees them.

A real `mailplat serve` process relays alice's mail to a remote domain whose
DNS does not answer, so it waits in the smtp queue. With the server stopped
we damage the message file (a flipped byte: checksum mismatch) of one
message and truncate the queue record of another, then start it again and
make it try: each is set aside once, with one log line and no traceback, its
sender (a local mailbox) gets a notice saying the text was lost, and
`mailplat status` and `mailplat queue quarantine` show the entries.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
from pathlib import Path
from typing import Any

from tests.e2e.serveproc import mailplat, serve, site_with_ports, status, wait_until
from tests.support import maildir_files


def _send(port: int, subject: str) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("alice@example.test")
        s.rcpt("friend@remote.test")
        code, reply = s.data(f"Subject: {subject}\r\n\r\nimportant words\r\n".encode())
    assert code == 250, reply
    m = re.search(r"queued as (\S+)", reply.decode())
    assert m
    return m.group(1)


def _json(*args: str) -> Any:
    res = mailplat(*args, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def _notices(data: Path) -> list[email.message.EmailMessage]:
    out = []
    for path in maildir_files(data, "example", "alice"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if msg.get_content_type() == "multipart/report":
            assert isinstance(msg, email.message.EmailMessage)
            out.append(msg)
    return out


def test_damaged_files_are_quarantined_once_and_the_sender_told(tmp_path: Path) -> None:
    site, ports = site_with_ports(
        tmp_path, site={"relay": {"privileged_ips": ["127.0.0.1"]}, "logging": {"json": True}}
    )
    data = tmp_path / "data"
    spool = data / "spool"
    with serve(site, data, ports["smtp"]):
        body_hit = _send(ports["smtp"], "body damaged")
        record_hit = _send(ports["smtp"], "record damaged")
        wait_until(lambda: len(list((spool / "q" / "smtp").iterdir())) == 2, what="both queued")
    # Damage on disk while the server is down (nothing in memory to hide it).
    msg_file = spool / "msg" / body_hit
    raw = bytearray(msg_file.read_bytes())
    at = raw.index(b"important")
    raw[at] ^= 0x20
    msg_file.write_bytes(bytes(raw))
    record_file = spool / "q" / "smtp" / f"{record_hit}.0"
    record_file.write_bytes(record_file.read_bytes()[:-6])

    with serve(site, data, ports["smtp"]):
        # The record's damage is found when the spool opens; the body's when
        # delivery reads it, which a retry makes happen now.
        res = mailplat("queue", "retry", "--all", "--data", str(data))
        assert res.returncode == 0, res.stdout + res.stderr
        wait_until(lambda: len(_notices(data)) == 2, what="two notices in alice's Maildir")
        wait_until(lambda: status(site, data)["queues"].get("smtp", 0) == 0, what="queue empty")
        # A second try finds nothing to retry: quarantined means never retried.
        again = mailplat("queue", "retry", "--all", "--data", str(data))
        assert again.returncode == 0 and "0 message(s)" in again.stdout

        counts = status(site, data)["queues"]
        assert counts["quarantine"] == 4  # per message: its record and its message file
        text = mailplat("status", str(site), "--data", str(data)).stdout
        assert "4 damaged spool file(s)" in text

        entries = _json("queue", "quarantine", "--data", str(data))
        by_id: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            by_id.setdefault(e["id"], []).append(e)
        assert sorted(e["kind"] for e in by_id[body_hit]) == ["message", "record"]
        [body_record] = [e for e in by_id[body_hit] if e["kind"] == "record"]
        assert body_record["from"] == "alice@example.test"
        assert body_record["rcpts"] == ["friend@remote.test"]
        assert "checksum mismatch" in body_record["why"]
        assert body_record["notified"] not in ("", "-") and not body_record["notify"]
        assert {e["kind"] for e in by_id[record_hit]} == {"record", "message"}
        table = mailplat("queue", "quarantine", "--data", str(data))
        assert table.returncode == 0 and "4 file(s) in quarantine" in table.stdout
        assert body_hit in table.stdout
        shown = mailplat("queue", "quarantine", "show", body_hit, "--data", str(data))
        assert shown.returncode == 0, shown.stderr
        assert "Subject: body damaged" in shown.stdout and "checksum mismatch" in shown.stdout
        none = mailplat("queue", "quarantine", "show", "NOPE", "--data", str(data))
        assert none.returncode == 3 and "Traceback" not in none.stderr

    about = set()
    for notice in _notices(data):
        parts = list(notice.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status"]
        human = parts[0].get_content()
        assert "damaged in this server's storage" in human and "send it again" in human
        report = str(parts[1])
        assert "Final-Recipient: rfc822; friend@remote.test" in report
        assert "Status: 5.3.0" in report
        about.add(re.search(r"X-Mailplat-Queue-ID: (\S+)", report).group(1))  # type: ignore[union-attr]
        if body_hit in report:
            assert "its text failed its integrity check" in human
        else:
            assert "its delivery record failed" in human
    assert about == {body_hit, record_hit}

    events = [
        json.loads(line) for line in (data / "logs" / "mailplat.jsonl").read_text().splitlines()
    ]
    for msg_id in (body_hit, record_hit):
        lines = [e for e in events if e.get("event") == "spool quarantined" and e["id"] == msg_id]
        assert len(lines) == 1, lines  # once, one line
        told = [e for e in events if e.get("event") == "mta quarantine-notice"]
        assert any(e["parent"] == msg_id for e in told)
    assert not [e for e in events if "exc" in e]
    assert not [e for e in events if e.get("event") == "outbound settle-failed"]
    served = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert "Traceback" not in served

    # The damaged message's trace shows its life up to the quarantine and the notice.
    traced = mailplat("trace", str(site), body_hit, "--data", str(data))
    assert traced.returncode == 0, traced.stderr
    for event in ("smtp accepted", "spool quarantined", "mta quarantine-notice", "delivery ok"):
        assert event in traced.stdout, traced.stdout
