"""One server per data root: an exclusive lock held for the life of `mailplat serve`.

Input: a data root. `acquire` takes <data>/state/serve.lock (flock, exclusive,
non-blocking) and writes our pid in it, or raises Busy naming the pid that
holds it; the lock goes with the process (even on kill -9: the kernel drops
it), so no stale lock is ever left behind. `holder` tells another process
(the CLI) whether a server holds a data root, without taking the lock.
Two servers on one data root would recover each other's spool and replace
each other's control socket: this makes the second one refuse to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class Busy(Exception):
    """Another process holds the data root."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"held by pid {pid}" if pid else "held by another process")
        self.pid = pid


def lock_path(data_root: Path) -> Path:
    return data_root / "state" / "serve.lock"


def acquire(data_root: Path) -> int:
    """Take the data root's lock; the fd to keep open (closing it releases the lock)."""
    path = lock_path(data_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _pid_in(fd)
        os.close(fd)
        raise Busy(pid) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def holder(data_root: Path) -> int | None:
    """The pid of the server holding data_root, or None when no server does."""
    path = lock_path(data_root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _pid_in(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    return None
