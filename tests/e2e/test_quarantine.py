"""Damaged spool data is quarantined once, the sender is told, the admin sees it.

A real `mailplat serve` process relays alice's mail to a remote domain whose
DNS does not answer, so it waits in the smtp queue. With the server stopped
we damage, in the journal, the text of one message (a flipped bit: checksum
mismatch) and the ROUTE frame of another, then start it again: each damage
is set aside once, with one log line and no traceback. The first message's
sender (a local mailbox) gets a notice saying its text was lost; the second
loses only its routing decision, so it is routed again and still queued
(nothing lost). `mailplat status` and `mailplat queue quarantine` show both.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
from pathlib import Path
from typing import Any

from mailplat.spool import frames as fr
from tests.e2e.serveproc import mailplat, serve, site_with_ports, status, wait_until
from tests.support import maildir_files
from tests.support_spool import damage_body, flip, frames_of


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
        route_hit = _send(ports["smtp"], "route damaged")
        wait_until(lambda: status(site, data)["queues"].get("smtp", 0) == 2, what="both queued")
    # Damage on disk while the server is down (nothing in memory to hide it).
    damage_body(spool, body_hit, b"important")
    [route] = [f for f in frames_of(spool, route_hit) if f.kind == fr.ROUTE][:1]
    flip(route.path, route.offset + route.length - 3)

    with serve(site, data, ports["smtp"]):
        wait_until(lambda: len(_notices(data)) == 1, what="a notice in alice's Maildir")
        # The message whose text was lost is out of the queue for good; the one
        # that lost only its ROUTE is routed again and waits as before.
        wait_until(lambda: status(site, data)["queues"].get("smtp", 0) == 1, what="one queued")
        listed = _json("queue", "list", "--data", str(data))
        assert [e["trace_id"] for e in listed] == [route_hit]

        counts = status(site, data)["queues"]
        assert counts["quarantine"] == 2
        text = mailplat("status", str(site), "--data", str(data)).stdout
        assert "2 damaged spool file(s)" in text

        entries = _json("queue", "quarantine", "--data", str(data))
        [lost] = [e for e in entries if e.get("id") == body_hit]
        assert lost["from"] == "alice@example.test"
        assert lost["rcpts"] == ["friend@remote.test"]
        assert "checksum mismatch" in lost["why"]
        assert lost["notified"] not in ("", "-") and not lost["notify"]
        [state] = [e for e in entries if e.get("id") != body_hit]
        assert not state.get("notify")  # a lost ROUTE loses no mail: nobody to tell
        table = mailplat("queue", "quarantine", "--data", str(data))
        assert table.returncode == 0 and "2 file(s) in quarantine" in table.stdout
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
        assert "its text failed its integrity check" in human
    assert about == {body_hit}

    events = [
        json.loads(line) for line in (data / "logs" / "mailplat.jsonl").read_text().splitlines()
    ]
    quarantined = [e for e in events if e.get("event") == "spool quarantined"]
    assert len(quarantined) == 2, quarantined  # once each, one line each
    assert [e["id"] for e in quarantined if e["id"] == body_hit] == [body_hit]
    told = [e for e in events if e.get("event") == "mta quarantine-notice"]
    assert [e["parent"] for e in told] == [body_hit]
    assert not [e for e in events if "exc" in e]
    assert not [e for e in events if e.get("event") == "outbound settle-failed"]
    served = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert "Traceback" not in served

    # The damaged message's trace shows its life up to the quarantine and the notice.
    traced = mailplat("trace", str(site), body_hit, "--data", str(data))
    assert traced.returncode == 0, traced.stderr
    for event in ("smtp accepted", "spool quarantined", "mta quarantine-notice"):
        assert event in traced.stdout, traced.stdout
