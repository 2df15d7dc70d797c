"""One id per message through every stage, JSON log fields, and `mailplat trace`.

A real `mailplat serve` process with the JSON log on: the id the SMTP reply
names is the one in the Received header and in every log line of every stage,
the log lines carry their fields as JSON keys, and `mailplat trace` prints the
message's life, following the auto-reply it caused.
"""

from __future__ import annotations

import json
import re
import smtplib
from pathlib import Path
from typing import Any

from tests.e2e.serveproc import mailplat, serve, site_with_ports, wait_until
from tests.support import base_postoffice, maildir_files


def _site(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    po = base_postoffice()
    po["mailboxes"]["bob"]["autoresponder"] = {"subject": "Away", "body": "Back Monday."}
    return site_with_ports(
        tmp_path,
        site={"logging": {"json": True, "activity": True}},
        postoffices={"example": po},
    )


def _send(port: int) -> str:
    """Send alice -> bob; the id of `250 2.0.0 OK queued as ID`."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail("alice@example.test")
        s.rcpt("bob@example.test")
        code, reply = s.data(b"Subject: trace me\r\nMessage-ID: <t@x.test>\r\n\r\nhello\r\n")
    assert code == 250, reply
    m = re.fullmatch(r"2\.0\.0 OK queued as (\S+)", reply.decode())
    assert m, reply
    return m.group(1)


def _events(data: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (data / "logs" / "mailplat.jsonl").read_text().splitlines()]


def test_one_id_through_every_stage_and_trace_follows_it(tmp_path: Path) -> None:
    site, ports = _site(tmp_path)
    data = tmp_path / "data"
    with serve(site, data, ports["smtp"]):
        msg_id = _send(ports["smtp"])
        wait_until(
            lambda: any(
                b"Subject: Away" in f.read_bytes() for f in maildir_files(data, "example", "alice")
            ),
            what="the auto-reply in alice's Maildir",
        )
        wait_until(
            lambda: sum(e.get("event") == "delivery ok" for e in _events(data)) == 2,
            what="both deliveries logged",
        )
    [delivered] = maildir_files(data, "example", "bob")
    received = delivered.read_bytes().split(b"\r\n\r\n")[0].decode()
    assert f"id {msg_id}" in received  # the Received header names the same id

    events = _events(data)
    # Fields are JSON keys, derived from the call sites' templates.
    [accepted] = [e for e in events if e.get("event") == "smtp accepted"]
    assert accepted["id"] == msg_id and accepted["peer"] == "127.0.0.1"
    assert accepted["from"] == "alice@example.test" and accepted["rcpts"] == 1
    assert isinstance(accepted["size"], int) and "msg" not in accepted
    # Every stage logs the one id.
    stages = {e["event"]: e for e in events if e.get("id") == msg_id}
    assert {"smtp accepted", "mta routed", "delivery ok"} <= set(stages)
    assert stages["mta routed"]["queue"] == "postoffice"
    assert stages["delivery ok"]["mailbox"] == "example/bob"
    [reply] = [e for e in events if e.get("event") == "delivery autoreply"]
    assert reply["parent"] == msg_id and reply["id"] != msg_id
    # The text logs read as before.
    activity = (data / "logs" / "activity.log").read_text()
    assert f"smtp accepted id={msg_id}" in activity and f"delivery ok id={msg_id}" in activity

    res = mailplat("trace", str(site), msg_id, "--data", str(data))
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    order = ["smtp accepted", "mta routed", "delivery ok", "delivery autoreply"]
    positions = [next(i for i, line in enumerate(lines) if s in line) for s in order]
    assert positions == sorted(positions), res.stdout
    assert "peer=127.0.0.1" in res.stdout and "mailbox=example/bob" in res.stdout
    # The auto-reply's own life is part of the trace: routed and delivered to alice.
    assert f"id={reply['id']}" in res.stdout and "mailbox=example/alice" in res.stdout

    as_json = mailplat("trace", str(site), f"{msg_id}.0", "--data", str(data), "--json")
    assert as_json.returncode == 0, as_json.stderr
    traced = json.loads(as_json.stdout)
    assert {e.get("id") for e in traced} == {msg_id, reply["id"]}
    assert [e["ts"] for e in traced] == sorted(e["ts"] for e in traced)

    missing = mailplat("trace", str(site), "0" * 20, "--data", str(data))
    assert missing.returncode == 3 and "nothing logged" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_trace_without_a_log(tmp_path: Path) -> None:
    site, _ = _site(tmp_path)
    res = mailplat("trace", str(site), "0" * 20, "--data", str(tmp_path / "nothing"))
    assert res.returncode == 1 and "mailplat.jsonl" in res.stderr
    assert "Traceback" not in res.stderr


def test_trace_follows_a_bounce_to_the_sender(tmp_path: Path) -> None:
    po = base_postoffice()
    po["mailboxes"]["bob"]["quota_mb"] = 1
    site, ports = site_with_ports(
        tmp_path, site={"logging": {"json": True}}, postoffices={"example": po}
    )
    data = tmp_path / "data"
    big = b"Subject: too big for bob\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1200
    with serve(site, data, ports["smtp"]):
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
            s.ehlo("client.test")
            s.mail("alice@example.test")
            s.rcpt("alice@example.test")
            s.rcpt("bob@example.test")
            code, reply = s.data(big)
        assert code == 250, reply
        msg_id = reply.decode().rsplit(" ", 1)[1]
        wait_until(
            lambda: any(
                b"multipart/report" in f.read_bytes()
                for f in maildir_files(data, "example", "alice")
            ),
            what="the bounce in alice's Maildir",
        )
        wait_until(
            lambda: sum(e.get("event") == "delivery ok" for e in _events(data)) == 2,
            what="the bounce delivered",
        )
    [bounce] = [e for e in _events(data) if e.get("event") == "delivery bounce"]
    assert bounce["parent"] == msg_id and bounce["to"] == "alice@example.test"
    res = mailplat("trace", str(site), msg_id, "--data", str(data), "--json")
    assert res.returncode == 0, res.stderr
    traced = [(e.get("event"), e.get("id"), e.get("mailbox")) for e in json.loads(res.stdout)]
    assert ("delivery over-quota", msg_id, "example/bob") in traced
    assert ("delivery bounce", bounce["id"], None) in traced
    # The bounce's own delivery to the sender is part of the original's trace.
    assert ("delivery ok", bounce["id"], "example/alice") in traced
