"""Structured logging: one line per event, as text on the terminal and JSON lines on disk.

Every event line carries key=value pairs (id=, peer=, mailbox=) so a trace id
can be followed through every stage with `grep id=<ID>`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path


class JsonFormatter(logging.Formatter):
    """{"ts":..., "level":..., "logger":..., "msg":...} per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


_AIOSMTPD_NOISE = (
    "auth_required == True but auth_require_tls == False",
    "login_data is deprecated",
)


def _drop_aiosmtpd_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in _AIOSMTPD_NOISE)


def setup(log_dir: Path | None, *, debug: bool = False, json_file: bool = True) -> None:
    """Log to stderr (text) and, when log_dir is set, to mailplat.jsonl there (daily rollover)."""
    root = logging.getLogger("mailplat")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root.addHandler(console)
    if log_dir is not None and json_file:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = TimedRotatingFileHandler(log_dir / "mailplat.jsonl", when="midnight", utc=True)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    # aiosmtpd logs every command at INFO; keep only its warnings, minus two it
    # repeats on every connection that say nothing to an admin: implicit-TLS
    # listeners need no STARTTLS before AUTH, and login_data is its own API.
    aiosmtpd_log = logging.getLogger("mail.log")
    aiosmtpd_log.setLevel(logging.WARNING)
    aiosmtpd_log.addFilter(_drop_aiosmtpd_noise)
