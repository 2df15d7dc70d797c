"""Postfix's smtp-sink on 127.0.0.1:<port>: accepts every message and discards it.

No SMTP server can beat it on this machine, so it is the floor of the SMTP
scenarios. Runs as user postfix (`-u postfix`, required as root).
"""

from __future__ import annotations

import os
import subprocess

from bench.peers.postfix import SMTP_SINK, ensure_installed
from bench.util import REGISTRY, wait_port


def start(port: int, backlog: int = 1024) -> subprocess.Popen[bytes]:
    """Start smtp-sink; the process is registered, so it is stopped at exit."""
    ensure_installed()
    cmd = [SMTP_SINK]
    if os.geteuid() == 0:
        cmd += ["-u", "postfix"]
    cmd += [f"127.0.0.1:{port}", str(backlog)]
    proc = REGISTRY.add_process(
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    )
    wait_port(port, 15, proc)
    return proc
