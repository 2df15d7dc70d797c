"""`mailplat serve --watch` prints a refused change one error per line, and keeps watching.

A real process: a save with two errors, one quoting a value that looks like
console markup (`[/lots]`), prints `change refused` and then each error on
its own line, the value as written; `mailplat status` lists them the same
way; the watcher survives to apply the next good save.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.e2e.serveproc import mailplat, rcpt_code, serve, site_with_ports, status, wait_until
from tests.support import base_postoffice, dump, pw


def test_refused_save_prints_one_error_per_line_and_watching_goes_on(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path)
    data = tmp_path / "data"
    po_file = site / "postoffices" / "example.yaml"
    with serve(site, data, ports["smtp"], "--watch") as proc:
        wait_until(lambda: status(site, data)["uptime_seconds"] > 0.3, what="watcher settled")
        broken = base_postoffice()
        broken["mailboxes"]["alice"]["quota_mb"] = "[/lots]"
        broken["mailboxes"]["bob"]["quota_mb"] = "many"
        dump(po_file, broken)
        wait_until(lambda: status(site, data)["last_rejected"] is not None, what="refusal")
        assert len(status(site, data)["last_rejected"]["errors"]) == 2
        # `mailplat status` shows the same refusal, one error per line, values as written.
        text = mailplat("status", str(site), "--data", str(data))
        assert text.returncode == 0 and "Traceback" not in text.stderr, text.stderr
        listed = [line for line in text.stdout.splitlines() if "example.yaml:" in line]
        assert len(listed) == 2 and all(line.startswith("    ") for line in listed), text.stdout
        assert "got '[/lots]'" in listed[0] + listed[1], listed
        # The watcher is still alive: the next good save is applied.
        fixed = base_postoffice()
        fixed["mailboxes"]["zed"] = {"password": pw("zed-secret")}
        dump(po_file, fixed)
        wait_until(lambda: rcpt_code(ports["smtp"], "zed@example.test") == 250, what="next save")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    lines = (data.parent / f"serve-{ports['smtp']}.log").read_text().splitlines()
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    start = next(i for i, line in enumerate(lines) if line.startswith("change refused: "))
    assert lines[start] == (
        "change refused: 2 error(s) in the configuration (still serving the old config)"
    )
    shown = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        shown.append(line)
    errors = [line for line in shown if not line.startswith("    ")]
    assert len(errors) == 2, shown
    assert all("example.yaml:" in line and ": error: " in line for line in errors), shown
    assert sum("got '[/lots]'" in line for line in errors) == 1, shown
    assert sum("got 'many'" in line for line in errors) == 1, shown
    assert any(line.startswith("applied generation") for line in lines[start:]), lines[start:]
