"""`mailplat serve` as a real process: listeners logged, mail accepted, SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.test_crash_durability import free_port, wait_port
from tests.support import write_site


def test_serve_logs_listeners_and_stops_on_sigterm(tmp_path: Path) -> None:
    ports = {k: free_port() for k in ("smtp", "submission", "smtps", "pop3", "pop3s")}
    site = write_site(
        tmp_path,
        site={"listeners": {k: {"bind": [f"127.0.0.1:{p}"]} for k, p in ports.items()}},
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailplat",
                "serve",
                str(site),
                "--data",
                str(tmp_path / "data"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_port(ports["smtp"], proc)
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
                s.sendmail("x@remote.test", ["alice@example.test"], b"Subject: e2e\r\n\r\nhi\r\n")
            # A session in flight when SIGTERM arrives is allowed to finish.
            s2 = smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10)
            s2.ehlo("c.test")
            start = time.time()
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            s2.sendmail(
                "x@remote.test", ["alice@example.test"], b"Subject: in flight\r\n\r\nhi\r\n"
            )
            s2.quit()
            assert proc.wait(timeout=15) == 0
            assert time.time() - start < 10
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    for kind, port in ports.items():
        assert f"listening protocol={kind} address=127.0.0.1:{port}" in text, text
    maildir = tmp_path / "data" / "postoffices" / "example" / "alice"
    assert len(list((maildir / "new").glob("*"))) == 2


def test_serve_refuses_to_start_without_its_certificates(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    for name in ("cert.pem", "key.pem"):
        (tmp_path / "tls" / name).unlink()
    res = subprocess.run(
        [sys.executable, "-m", "mailplat", "serve", str(site), "--data", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    out = res.stdout + res.stderr
    assert "Traceback" not in out
    assert str(tmp_path / "tls" / "cert.pem") in out and "tls self-signed" in out
