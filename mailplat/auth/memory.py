"""Expiring memories: POP-before-SMTP logins, SMTP auto-bans, autoresponder replies.

Runtime state, not config: kept in memory and saved to a JSON file under
<data>/state/ (pop_before_smtp.json, bans.json, autoreplies.json) so it
survives restarts and reloads. Bounded: expired keys are pruned and at most
MAX_ENTRIES kept (the oldest expiry goes first), so nobody can grow it by
sending mail from endless addresses. Saved at most once a second (a
crash loses at most that last second), and at once by flush() on a stop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("mailplat.state")

MAX_ENTRIES = 50_000
SAVE_DELAY = 1.0


class ExpiringMemory:
    """Key (an IP, or mailbox|sender) -> expiry time."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.until: dict[str, float] = {}
        self._pending: asyncio.TimerHandle | None = None
        if path is not None and path.exists():
            try:
                self.until = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
            except (ValueError, OSError, AttributeError):
                self.until = {}

    def record(self, key: str, minutes: int) -> None:
        now = time.time()
        if len(self.until) >= MAX_ENTRIES:
            self.until = {k: v for k, v in self.until.items() if v > now}
            while len(self.until) >= MAX_ENTRIES:
                del self.until[min(self.until, key=self.until.__getitem__)]
        self.until[key] = now + minutes * 60
        self._save_soon()

    def allowed(self, key: str) -> bool:
        return self.until.get(key, 0.0) > time.time()

    def forget(self, key: str) -> None:
        if self.until.pop(key, None) is not None:
            self._save_soon()

    def _save_soon(self) -> None:
        if self.path is None or self._pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()  # no event loop (a CLI, a test): save now
            return
        self._pending = loop.call_later(SAVE_DELAY, self.flush)

    def flush(self) -> None:
        """Save now (pruned of what expired)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self.path is None:
            return
        now = time.time()
        self.until = {k: v for k, v in self.until.items() if v > now}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.until))
            os.replace(tmp, self.path)
        except OSError as exc:
            # The memory still holds; only a restart would forget it.
            log.warning("state unwritable path=%s why=%s", self.path, exc)


# POP-before-SMTP: an IP that logged in by POP3 may relay for a few minutes.
PopBeforeSmtp = ExpiringMemory
