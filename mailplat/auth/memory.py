"""Expiring memories: POP-before-SMTP logins, SMTP auto-bans, autoresponder replies.

Runtime state, not config: kept in memory and saved to a JSON file under
<data>/state/ (pop_before_smtp.json, bans.json, autoreplies.json) so it
survives restarts and reloads.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class ExpiringMemory:
    """Key (an IP, or mailbox|sender) -> expiry time, saved on every change."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.until: dict[str, float] = {}
        if path is not None and path.exists():
            try:
                self.until = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
            except (ValueError, OSError, AttributeError):
                self.until = {}

    def record(self, ip: str, minutes: int) -> None:
        now = time.time()
        self.until = {k: v for k, v in self.until.items() if v > now}
        self.until[ip] = now + minutes * 60
        self._save()

    def allowed(self, ip: str) -> bool:
        return self.until.get(ip, 0.0) > time.time()

    def forget(self, ip: str) -> None:
        if self.until.pop(ip, None) is not None:
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.until))
        os.replace(tmp, self.path)


# POP-before-SMTP: an IP that logged in by POP3 may relay for a few minutes.
PopBeforeSmtp = ExpiringMemory
