"""`mailplat serve` that cannot start says why in one line, exits 1, and is not taken for a crash.

Real `mailplat serve` processes: a port someone else holds, a missing
certificate, a data root that cannot be a folder, root on port 25 without a
user to drop to. Each failure is one `error:` line naming the problem and
the fix, exit code 1, no traceback; and the next good start reports
`after_crash=False` (the spool's clean-stop marker survived the failure).
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.serveproc import serve, site_with_ports
from tests.support import write_site


def _serve_once(site: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailplat", "serve", str(site), "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 1, res.stdout + res.stderr
    text = res.stdout + res.stderr
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    return errors[0]


def _after_crash_flags(log: Path) -> list[str]:
    return re.findall(r"after_crash=(\w+)", log.read_text())


def test_busy_port_is_one_line_and_the_next_start_is_clean(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path)
    data = tmp_path / "data"
    # A clean run first, so the spool exists and carries its clean-stop marker.
    with serve(site, data, ports["smtp"]) as proc:
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
            s.sendmail("x@remote.test", ["alice@example.test"], b"Subject: a\r\n\r\nhi\r\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    log = data.parent / f"serve-{ports['smtp']}.log"
    assert _after_crash_flags(log) == ["False"]

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["pop3"]))
        squatter.listen()
        line = _one_error_line(_serve_once(site, data))
    assert f"cannot listen on 127.0.0.1:{ports['pop3']} for pop3" in line
    assert "already in use" in line and "listeners.pop3.bind" in line

    # The failed start left the spool as the clean stop did: no crash next time.
    with serve(site, data, ports["smtp"]):
        pass
    assert _after_crash_flags(log) == ["False", "False"]


def test_missing_certificate_is_one_line(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    (tmp_path / "tls" / "key.pem").unlink()
    line = _one_error_line(_serve_once(site, tmp_path / "data"))
    assert str(tmp_path / "tls" / "key.pem") in line
    assert "mailplat tls self-signed" in line


def test_data_root_that_cannot_be_a_folder_is_one_line(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    (tmp_path / "a-file").write_text("not a folder\n")
    line = _one_error_line(_serve_once(site, tmp_path / "a-file" / "data"))
    assert f"cannot use data root {tmp_path / 'a-file' / 'data'}: Not a directory" in line
    assert "--data" in line


@pytest.mark.skipif(os.geteuid() != 0, reason="root decides whether port 25 may be served")
def test_root_on_port_25_without_a_user_is_refused(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"listeners": {"smtp": {"bind": ["127.0.0.1:25"]}}})
    line = _one_error_line(_serve_once(site, tmp_path / "data"))
    assert "refusing to serve port(s) 25 as root without server.user" in line


def test_unknown_server_user_is_one_line(tmp_path: Path) -> None:
    site = write_site(tmp_path, site={"server": {"user": "no-such-user-mailplat"}})
    line = _one_error_line(_serve_once(site, tmp_path / "data"))
    assert "server.user 'no-such-user-mailplat' does not exist on this host" in line
