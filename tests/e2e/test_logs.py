"""The log files a site asks for: W3C SMTP log, activity log, JSON lines."""

from __future__ import annotations

import json
import smtplib
import ssl
from pathlib import Path

from tests.e2e.serveproc import serve, site_with_ports, wait_until


def test_w3c_activity_and_json_logs(tmp_path: Path) -> None:
    site, ports = site_with_ports(
        tmp_path, site={"logging": {"w3c": True, "activity": True, "json": True}}
    )
    data = tmp_path / "data"
    logs = data / "logs"
    with serve(site, data, ports["smtp"]):
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
            s.ehlo("client.test")
            s.sendmail("x@remote.test", ["alice@example.test"], b"Subject: logs\r\n\r\nhi\r\n")
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=10) as s:
            s.starttls(context=ctx)
            s.login("bob@example.test", "bob-secret")
        wait_until(
            lambda: (
                (logs / "activity.log").exists()
                and "delivery ok" in (logs / "activity.log").read_text()
            ),
            what="activity line",
        )
    w3c = (logs / "smtp-w3c.log").read_text().splitlines()
    assert w3c[0] == "#Software: mailplat"
    assert w3c[3].startswith("#Fields: date time c-ip s-ip s-port cs-method")
    body = [line.split(" ") for line in w3c[4:]]
    commands = [(f[5], f[6], f[7]) for f in body if f[4] == str(ports["smtp"])]
    assert ("-", "-", "220") in commands  # the banner
    assert ("EHLO", "client.test", "250") in commands
    assert any(c[0] == "MAIL" and c[1].startswith("FROM:<x@remote.test>") for c in commands)
    assert commands.count(("EHLO", "client.test", "250")) == 1  # one line per reply
    assert ("DATA", "-", "354") in commands and ("DATA", "-", "250") in commands
    auth = [f for f in body if f[5] == "AUTH"]
    assert auth and all(f[6] == "-" for f in auth)  # credentials never logged
    assert "bob-secret" not in (logs / "smtp-w3c.log").read_text()
    activity = (logs / "activity.log").read_text()
    assert "smtp accepted" in activity and "mta routed" in activity
    assert "listening" not in activity  # only message events
    events = [json.loads(line) for line in (logs / "mailplat.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "delivery ok" for e in events)
