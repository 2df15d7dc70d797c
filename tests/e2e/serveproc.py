"""A real `mailplat serve` child process for end-to-end tests, and small client helpers."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.test_crash_durability import free_port, wait_port
from tests.support import write_site

__all__ = ["free_port", "mailplat", "rcpt_code", "serve", "site_with_ports", "wait_until"]


def site_with_ports(root: Path, **extra: Any) -> tuple[Path, dict[str, int]]:
    """A site (tests/support.py's) with every listener on its own free port."""
    ports = {k: free_port() for k in ("smtp", "submission", "smtps", "pop3", "pop3s")}
    site = {"listeners": {k: {"bind": [f"127.0.0.1:{p}"]} for k, p in ports.items()}}
    site.update(extra.pop("site", {}))
    return write_site(root, site=site, **extra), ports


def mailplat(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailplat", *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        cwd=cwd,
    )


@contextmanager
def serve(site: Path, data: Path, port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run `mailplat serve SITE --data DATA` until the block ends (then SIGTERM)."""
    log = data.parent / f"serve-{port}.log"
    data.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailplat", "serve", str(site), "--data", str(data), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_port(port, proc)
        wait_until(lambda: (data / "state" / "control.sock").exists(), what="control socket")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(
    predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition"
) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached in {timeout} s")


def rcpt_code(port: int, rcpt: str, sender: str = "someone@remote.test") -> int:
    """The reply code a RCPT TO gets on a fresh SMTP session."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.mail(sender)
        code, _ = s.rcpt(rcpt)
        s.rset()
        return code


def status(site: Path, data: Path) -> dict[str, Any]:
    res = mailplat("status", str(site), "--data", str(data), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    reply = json.loads(res.stdout)
    assert isinstance(reply, dict)
    return reply
