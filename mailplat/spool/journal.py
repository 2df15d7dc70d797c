"""The spool's journal: numbered segment files, appended by one writer with group commit.

Input: frames (frames.py) from the event loop, each marked durable or not.
Output: for each frame, its segment and offset. Files:
<spool>/journal/<seq>.seg, 16 hex digits, oldest first.

Frames are written on the event loop as they come (a copy into the page
cache, cheaper than a thread hand-off), in order. Durability is the group
commit: every durable frame written while an fdatasync runs waits for the
next one, and all of them share it. Under 50 concurrent sessions that is one
disk flush for many messages; a lone client pays one flush per message, as
with a file per message. Only the flush, which waits on the disk, runs in a
worker thread.

Guarantees:
- a durable frame's waiter is answered only after an fdatasync that began
  after its write has returned (the SMTP 250 waits for that);
- a new segment file's directory entry is fsynced before anything in it is
  acknowledged as durable, and a full segment is synced before it is closed;
- a failed write (disk full) is undone (the segment is truncated back to its
  last whole frame) and its caller gets the error: nothing half-written is
  ever followed by good frames, nothing is acknowledged that is not on disk;
- frames land in the order they were appended.
Reads (pread) may happen from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import Executor
from pathlib import Path

from mailplat.core.durable import fsync_dir, write_all
from mailplat.spool.faults import fault

SEGMENT_BYTES = 64 * 1024 * 1024
SUFFIX = ".seg"

Position = tuple[int, int]  # segment number, offset of the frame in it


def segment_name(seq: int) -> str:
    return f"{seq:016x}{SUFFIX}"


def segment_numbers(directory: Path) -> list[int]:
    """The segments in a journal directory, oldest first."""
    out = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        stem, _, ext = name.partition(".")
        if f".{ext}" == SUFFIX and len(stem) == 16:
            with contextlib.suppress(ValueError):
                out.append(int(stem, 16))
    return sorted(out)


class Journal:
    """Appends frames to the current segment; see the module docstring."""

    def __init__(
        self, directory: Path, executor: Executor, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.directory = directory
        self._executor = executor
        self.segment_bytes = segment_bytes
        self.seq = -1  # the segment being written
        self._fd = -1
        self._end = 0
        # Durable frames (and barriers: None) waiting for the next fdatasync.
        self._sync_waiters: list[tuple[asyncio.Future[Position | None], Position | None]] = []
        self._unsynced: set[int] = set()  # fds written since the last flush
        self._retired: list[int] = []  # full segments' fds, closed by the next flush
        self._new_file = False
        self._flusher: asyncio.Task[None] | None = None
        self.writes = 0
        self.syncs = 0
        self.frames = 0
        self.on_rotate: list[int] = []  # segments closed since the owner last looked

    # -- files -----------------------------------------------------------------------

    def path(self, seq: int) -> Path:
        return self.directory / segment_name(seq)

    def start(self, seq: int) -> None:
        """Open segment `seq` (new, empty) for appending; blocking."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path(seq), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fsync_dir(self.directory)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self.seq, self._end = fd, seq, 0

    def read(self, seq: int, offset: int, length: int) -> bytes:
        """length bytes of segment seq from offset (any thread)."""
        fd = os.open(self.path(seq), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def read_all(self, seq: int) -> bytes:
        return self.path(seq).read_bytes()

    def truncate(self, seq: int, size: int) -> None:
        """Cut a segment back to its last whole frame (a torn tail); synced."""
        fd = os.open(self.path(seq), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def delete(self, seq: int) -> None:
        """Remove a segment nothing refers to any more (not fsynced: losing the unlink
        only brings finished work back, which replay recognises as such)."""
        if seq != self.seq:
            self.path(seq).unlink(missing_ok=True)

    # -- appending -------------------------------------------------------------------

    def append(self, frame: bytes, *, durable: bool) -> asyncio.Future[Position | None]:
        """Write one frame now (a copy into the page cache); the future gives its position.

        A durable frame's future is answered once an fdatasync that began after
        the write has returned; the others' at once. Writing on the event loop
        costs a memcpy, less than handing the frame to a thread; only the
        disk flush, which waits, runs in a thread.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Position | None] = loop.create_future()
        try:
            pos = self._write(frame)
        except OSError as exc:
            waiter.set_exception(exc)
            return waiter
        if durable:
            self._sync_waiters.append((waiter, pos))
            self._kick(loop)
        else:
            waiter.set_result(pos)
        return waiter

    def barrier(self) -> asyncio.Future[Position | None]:
        """A future answered once everything written so far is synced."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Position | None] = loop.create_future()
        self._sync_waiters.append((waiter, None))
        self._kick(loop)
        return waiter

    def _write(self, frame: bytes) -> Position:
        if self._end > 0 and self._end + len(frame) > self.segment_bytes:
            self._rotate()
        start = self._end
        try:
            write_all(self._fd, frame)
        except OSError:
            # Undo a partial write so no torn frame sits before later good ones.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
                os.lseek(self._fd, start, os.SEEK_SET)
            raise
        self._end = start + len(frame)
        self._unsynced.add(self._fd)
        self.writes += 1
        self.frames += 1
        fault("spool.journal-written")
        return (self.seq, start)

    def _rotate(self) -> None:
        """Start the next segment; the full one is synced and closed by the next flush."""
        closed = self.seq
        self._retired.append(self._fd)
        fd = os.open(
            self.path(closed + 1), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        self._fd, self.seq, self._end = fd, closed + 1, 0
        self._new_file = True  # its directory entry is synced with the next flush
        self.on_rotate.append(closed)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        """Group commit: everyone waiting now shares one fdatasync begun after their write."""
        loop = asyncio.get_running_loop()
        try:
            while self._sync_waiters:
                batch, self._sync_waiters = self._sync_waiters, []
                fds, self._unsynced = self._unsynced, set()
                retired, self._retired = self._retired, []
                new_file, self._new_file = self._new_file, False
                try:
                    await loop.run_in_executor(self._executor, self._flush, fds, retired, new_file)
                except OSError as exc:
                    self._unsynced |= fds - set(retired)
                    for waiter, _ in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                for waiter, pos in batch:
                    if not waiter.done():
                        waiter.set_result(pos)
        finally:
            self._flusher = None

    def _flush(self, fds: set[int], retired: list[int], new_file: bool) -> None:
        """fdatasync what was written, the journal folder for a new segment (worker thread)."""
        for fd in fds:
            os.fdatasync(fd)
        if new_file:
            fsync_dir(self.directory)
        for fd in retired:
            if fd not in fds:
                os.fdatasync(fd)
            os.close(fd)
        self.syncs += 1
        fault("spool.journal-synced")

    async def drain(self) -> None:
        """Sync everything written; the spool calls this before closing."""
        await self.barrier()
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    def write_now(self, frames: list[bytes]) -> None:
        """Write frames and sync them, in this thread (at open, before the loop runs)."""
        for frame in frames:
            self._write(frame)
        self.flush_now()

    def flush_now(self) -> None:
        """Sync what is written, in this thread (a stop without the event loop)."""
        self._sync_waiters = []
        fds, self._unsynced = self._unsynced, set()
        retired, self._retired = self._retired, []
        if self._fd >= 0:
            self._flush(fds, retired, self._new_file)
            self._new_file = False

    def close(self) -> None:
        """Sync and close the current segment (blocking; after drain or flush_now)."""
        if self._fd >= 0:
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1
