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
from typing import Any


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


ACTIVITY_EVENTS = (
    "smtp accepted",
    "mta routed",
    "mta bounce",
    "delivery ok",
    "delivery bounce",
    "delivery autoreply",
    "delivery over-quota",
    "delivery possible-duplicate",
    "outbound delivered",
    "outbound deferred",
    "outbound failed",
    "outbound retry",
    "outbound bounce",
    "outbound badmail",
    "outbound delay-notice",
    "outbound possible-duplicate",
    "pop3 login",
    "reload applied",
    "reload refused",
)
W3C_FIELDS = "date time c-ip s-ip s-port cs-method cs-uri-query sc-status"


def _activity(record: logging.LogRecord) -> bool:
    return isinstance(record.msg, str) and record.msg.startswith(ACTIVITY_EVENTS)


class W3CFormatter(logging.Formatter):
    """`date time <message>` in UTC, the W3C extended log's first two fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        return f"{stamp} {record.getMessage()}"


def _file_handler(path: Path, rollover: str) -> logging.Handler:
    if rollover == "never":
        return logging.FileHandler(path, encoding="utf-8")
    when = "midnight" if rollover == "daily" else "H"
    return TimedRotatingFileHandler(path, when=when, utc=True, encoding="utf-8")


def _w3c_header() -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    return f"#Software: mailplat\n#Version: 1.0\n#Date: {stamp}\n#Fields: {W3C_FIELDS}\n"


class _W3CFile(logging.FileHandler):
    """A log file that starts with the W3C header."""

    def _open(self) -> Any:
        stream = super()._open()
        if stream.tell() == 0:
            stream.write(_w3c_header())
        return stream


class _W3CRotating(TimedRotatingFileHandler):
    """A rolling log file; every new file starts with the W3C header."""

    def _open(self) -> Any:
        stream = super()._open()
        if stream.tell() == 0:
            stream.write(_w3c_header())
        return stream


def setup(
    log_dir: Path | None,
    *,
    debug: bool = False,
    json_file: bool = True,
    w3c: bool = False,
    activity: bool = False,
    rollover: str = "daily",
) -> None:
    """Log to stderr (text) and, under log_dir, to the files the site asks for.

    mailplat.jsonl: every event as JSON; activity.log: one line per message
    event (accepted, routed, delivered, bounced, ...); smtp-w3c.log: every
    SMTP command and reply status in the W3C extended format. Files roll over
    daily, hourly or never.
    """
    # Several log lines per message: skip what no format here shows (caller
    # frame, thread and process names), as the logging docs' optimisation
    # section suggests; it was about a tenth of the logging cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger("mailplat")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    w3c_log = logging.getLogger("mailplat.w3c")
    w3c_log.propagate = False
    for logger in (root, w3c_log):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root.addHandler(console)
    # Disabled unless asked for, so the SMTP hot path skips it with one check.
    w3c_log.setLevel(logging.INFO if (w3c and log_dir is not None) else logging.CRITICAL + 1)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        if json_file:
            handler = _file_handler(log_dir / "mailplat.jsonl", rollover)
            handler.setFormatter(JsonFormatter())
            root.addHandler(handler)
        if activity:
            handler = _file_handler(log_dir / "activity.log", rollover)
            handler.addFilter(_activity)
            handler.setFormatter(
                logging.Formatter("%(asctime)s\t%(name)s\t%(message)s", "%Y-%m-%d %H:%M:%S")
            )
            root.addHandler(handler)
        if w3c:
            path = log_dir / "smtp-w3c.log"
            w3c_handler: logging.Handler
            if rollover == "never":
                w3c_handler = _W3CFile(path, encoding="utf-8")
            else:
                when = "midnight" if rollover == "daily" else "H"
                w3c_handler = _W3CRotating(path, when=when, utc=True, encoding="utf-8")
            w3c_handler.setFormatter(W3CFormatter())
            w3c_log.addHandler(w3c_handler)
    # aiosmtpd logs every command at INFO; keep only its warnings, minus two it
    # repeats on every connection that say nothing to an admin: implicit-TLS
    # listeners need no STARTTLS before AUTH, and login_data is its own API.
    aiosmtpd_log = logging.getLogger("mail.log")
    aiosmtpd_log.setLevel(logging.WARNING)
    aiosmtpd_log.addFilter(_drop_aiosmtpd_noise)
