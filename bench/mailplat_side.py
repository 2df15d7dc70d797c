"""The mailplat side: write a bench site (tests/support.py's write_site format) and serve it.

`write_bench_site()` writes `site/site.yaml` and `site/postoffices/bench.yaml`
(domain `bench.test`, the given mailboxes, SHA512-CRYPT passwords, no TLS) with
listener ports chosen by the caller; `MailplatServer` runs `mailplat serve SITE
--data DATA` as a child process (stopped by SIGTERM at the end, like an admin
would) and knows where its Maildirs are.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from bench.util import REGISTRY, proc_status_kb, wait_port

DOMAIN = "bench.test"
POSTOFFICE = "bench"

_yaml = YAML(typ="safe", pure=True)
_yaml.default_flow_style = False


def dump(path: Path, data: Any, schema: str | None = None) -> None:
    """Write one YAML file (with the yaml-language-server schema line, as the example site)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        if schema:
            fh.write(f"# yaml-language-server: $schema={schema}\n")
        _yaml.dump(data, fh)


def site_yaml(
    smtp_port: int, pop3_port: int, max_connections: int = 5000, hold: bool = False
) -> dict[str, Any]:
    """site.yaml of a bench site: plain SMTP and POP3 on loopback, limits out of the way.

    hold=True adds `delivery.hold: true` (accept and keep every message in its
    queue, deliver nothing): the accept-only side facing Postfix without qmgr.
    """
    delivery: dict[str, Any] = {"queue_poll_seconds": 1}
    if hold:
        delivery["hold"] = True
    off = {"enabled": False, "bind": ["127.0.0.1:0"]}
    return {
        "server": {
            "local_domain": DOMAIN,
            "host_name": f"mx.{DOMAIN}",
            "default_postoffice": POSTOFFICE,
        },
        "listeners": {
            "smtp": {"bind": [f"127.0.0.1:{smtp_port}"], "auth_requires_tls": False},
            "submission": off,
            "smtps": off,
            "pop3": {"bind": [f"127.0.0.1:{pop3_port}"], "auth_requires_tls": False},
            "pop3s": off,
        },
        "smtp": {
            "max_connections": max_connections,
            "max_connections_per_ip": max_connections,
            "max_recipients": 1000,
            "max_message_size_kb": 102400,
        },
        "delivery": delivery,
    }


def write_bench_site(
    root: Path,
    smtp_port: int,
    pop3_port: int,
    mailboxes: list[str],
    password_hash: str,
    hold: bool = False,
) -> Path:
    """Write root/site for the given mailboxes of postoffice `bench`; returns the site folder."""
    site = root / "site"
    dump(site / "site.yaml", site_yaml(smtp_port, pop3_port, hold=hold))
    dump(
        site / "postoffices" / f"{POSTOFFICE}.yaml",
        {
            "domains": {DOMAIN: {}},
            "mailboxes": {name: {"password": password_hash} for name in mailboxes},
        },
    )
    return site


def _control_answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
        return True
    except OSError:
        return False


def mailplat_cmd(*args: str) -> list[str]:
    """`mailplat ARGS` with the interpreter running the harness (the project's venv)."""
    return [sys.executable, "-m", "mailplat", *args]


@dataclass
class MailplatServer:
    """`mailplat serve` as a child process on the site's ports."""

    site: Path
    data: Path
    smtp_port: int
    pop3_port: int | None = None
    log: Path | None = None
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def maildir(self, mailbox: str, postoffice: str = POSTOFFICE) -> Path:
        return self.data / "postoffices" / postoffice / mailbox

    def start(self, timeout: float = 120.0) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        log = self.log or self.data.parent / "serve.log"
        with log.open("ab") as out:
            self.proc = REGISTRY.add_process(
                subprocess.Popen(
                    mailplat_cmd(
                        "serve", str(self.site), "--data", str(self.data), *self.extra_args
                    ),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            )
        REGISTRY.note_server("mailplat", self.proc.pid)
        try:
            wait_port(self.smtp_port, timeout, self.proc)
            if self.pop3_port:
                wait_port(self.pop3_port, timeout, self.proc)
            # The listeners bind first; the server is ready once its control socket
            # answers (a file left by an earlier server does not count).
            end = time.monotonic() + timeout
            while not _control_answers(self.data / "state" / "control.sock"):
                if self.proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError("the control socket does not answer")
                time.sleep(0.02)
        except (RuntimeError, TimeoutError) as exc:
            tail = log.read_text(errors="replace")[-3000:]
            self.stop()
            raise RuntimeError(f"mailplat serve did not start: {exc}\n{tail}") from exc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmRSS")

    def stop(self) -> None:
        if self.proc is not None:
            REGISTRY.stop_process(self.proc)
            self.proc = None
