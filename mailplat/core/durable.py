"""The two system-call idioms every durable write here is built from.

A rename, link or unlink is on stable storage only once its directory is
fsynced (Exim's rule), and os.write may write less than asked. The spool,
the Maildir store and the applied-state files all use these two.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """fsync a directory so the renames, links and unlinks in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of data to fd (os.write may stop short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
