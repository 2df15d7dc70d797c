"""A `mailplat serve` that fails to start says so in its own logs, not only on stderr.

A real process whose pop3 port is held by someone else: the JSON log (and
the console log stream) end with one ERROR `start failed` line carrying the
same text as the `error:` line, instead of ending on `listening smtp` as if
the server were up.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.e2e.serveproc import site_with_ports


def test_busy_port_failure_is_the_last_line_of_the_log(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path, site={"logging": {"json": True}})
    data = tmp_path / "data"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["pop3"]))
        squatter.listen()
        res = subprocess.run(
            [sys.executable, "-m", "mailplat", "serve", str(site), "--data", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    [error] = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    text = error.removeprefix("error: ")
    assert f"cannot listen on 127.0.0.1:{ports['pop3']} for pop3" in text

    events = [
        json.loads(line) for line in (data / "logs" / "mailplat.jsonl").read_text().splitlines()
    ]
    assert any(e.get("event") == "listening" for e in events)  # it got that far
    failed = [e for e in events if e.get("level") == "error"]
    assert len(failed) == 1 and failed[0] is events[-1], events[-3:]
    assert failed[0]["event"] == "start failed" and failed[0]["msg"] == text
    # The console log stream tells the same story in order.
    console = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert len(console) == 1 and console[0].endswith(f"start failed: {text}")
