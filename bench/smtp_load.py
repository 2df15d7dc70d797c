"""SMTP load with Postfix's own smtp-source, the same client for every side.

`smtp-source -s S -m N -l L -r R -f F -t u@bench.test 127.0.0.1:PORT` sends N
messages of an L-byte body over S concurrent sessions, each to R recipients
(`u`, `2u`, ..., `Ru`). The rate is N divided by the wall time of the run.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from bench.peers.postfix import SMTP_SOURCE


def recipients(count: int, local: str = "u") -> list[str]:
    """The local parts smtp-source uses for `-r count -t u@...`: u, 2u, ..., <count>u."""
    return [local] + [f"{i}{local}" for i in range(2, count + 1)]


@dataclass
class SmtpRun:
    """One smtp-source run."""

    messages: int
    seconds: float
    returncode: int
    output: str

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def smtp_source(
    port: int,
    messages: int,
    sessions: int,
    size: int = 1024,
    rcpts: int = 1,
    to: str = "u@bench.test",
    sender: str = "sender@remote.test",
    timeout: float = 900.0,
) -> SmtpRun:
    """Run smtp-source to completion against 127.0.0.1:port; measure wall time."""
    cmd = [
        SMTP_SOURCE,
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(size),
        "-r",
        str(rcpts),
        "-f",
        sender,
        "-t",
        to,
        "-M",
        "client.remote.test",
        f"127.0.0.1:{port}",
    ]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    seconds = time.perf_counter() - start
    return SmtpRun(messages, seconds, res.returncode, (res.stdout + res.stderr)[-2000:])
