"""Quota accounting: bytes used per Maildir, cached and kept current.

Input: Maildir objects; `add` after a delivery, `remove` after a deletion.
Output: `usage(maildir)` and `would_exceed(maildir, size, quota_bytes)`.
Guarantee: the cached figure is recomputed from disk whenever new/ or cur/
changed behind our back (a POP3 deletion, mutt moving a file), detected by
the folders' mtimes. Between such a change and the next check the figure can
only be too high, never too low, so a quota is never silently overrun.
Used from the event loop thread only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mailplat.store.maildir import Maildir


@dataclass(slots=True)
class _Entry:
    used: int
    stamp: tuple[int, int]


def _stamp(maildir: Maildir) -> tuple[int, int]:
    """mtime_ns of new/ and cur/: any link, unlink or rename in them changes it."""
    out = []
    for sub in ("new", "cur"):
        try:
            out.append(os.stat(maildir.path / sub).st_mtime_ns)
        except FileNotFoundError:
            out.append(-1)
    return (out[0], out[1])


class QuotaTracker:
    """Cached per-Maildir usage in bytes, keyed by the Maildir's path."""

    def __init__(self) -> None:
        self._cache: dict[str, _Entry] = {}

    @staticmethod
    def _key(maildir: Maildir) -> str:
        return os.path.abspath(maildir.path)

    def usage(self, maildir: Maildir) -> int:
        """Bytes used by the messages of `maildir`."""
        key = self._key(maildir)
        stamp = _stamp(maildir)
        entry = self._cache.get(key)
        if entry is None or entry.stamp != stamp:
            entry = _Entry(used=maildir.usage_bytes(), stamp=stamp)
            self._cache[key] = entry
        return entry.used

    def would_exceed(self, maildir: Maildir, size: int, quota_bytes: int | None) -> bool:
        """True when storing `size` more bytes would pass `quota_bytes` (None = unlimited)."""
        if quota_bytes is None:
            return False
        return self.usage(maildir) + size > quota_bytes

    def add(self, maildir: Maildir, nbytes: int) -> None:
        """Account for a delivery of `nbytes` that we just made."""
        self._adjust(maildir, nbytes)

    def remove(self, maildir: Maildir, nbytes: int) -> None:
        """Account for a deletion of `nbytes` that we just made."""
        self._adjust(maildir, -nbytes)

    def forget(self, maildir: Maildir) -> None:
        """Drop the cached figure; the next `usage` reads the disk."""
        self._cache.pop(self._key(maildir), None)

    def _adjust(self, maildir: Maildir, delta: int) -> None:
        key = self._key(maildir)
        entry = self._cache.get(key)
        if entry is None:
            return  # nothing cached: the next usage() measures the disk anyway
        # Taking the new stamp here folds our own change in without a rescan; a
        # foreign deletion racing with it can only leave the figure too high.
        entry.used = max(0, entry.used + delta)
        entry.stamp = _stamp(maildir)
