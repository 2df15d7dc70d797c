"""The spool's journal: numbered segment files, appended by one writer with group commit.

Input: frames (frames.py) from the event loop, each marked durable or not.
Output: for each frame, once it is written, the segment and offset it landed
at. Files: <spool>/journal/<seq>.seg, 16 hex digits, oldest first.

Group commit: frames queued while a write is in progress go out together in
the next write, and a write that carries at least one durable frame is
followed by one fdatasync before any of its waiters is answered. Under 50
concurrent sessions that is one disk flush for many messages; a lone client
pays one flush per message, as with a file per message.

Guarantees:
- a durable frame's waiter is answered only after the fdatasync that covers
  it has returned (the SMTP 250 waits for that);
- a new segment file's directory entry is fsynced before anything in it is
  acknowledged as durable;
- a failed write (disk full) is undone (the segment is truncated back to its
  last whole frame) and every waiter of that write gets the error: nothing
  half-written is ever followed by good frames, nothing is acknowledged that
  is not on disk;
- frames land in the order they were queued.
One thread writes at a time; reads (pread) may happen from any thread.
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
        self._pending: list[bytes] = []
        # (waiter, durable, carries a frame): a barrier carries none.
        self._waiters: list[tuple[asyncio.Future[Position | None], bool, bool]] = []
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
        """Queue one frame; the future gives its position once written (and synced)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Position | None] = loop.create_future()
        self._pending.append(frame)
        self._waiters.append((waiter, durable, True))
        self._kick(loop)
        return waiter

    def barrier(self) -> asyncio.Future[Position | None]:
        """A future answered once everything queued so far is written and synced."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Position | None] = loop.create_future()
        self._waiters.append((waiter, True, False))
        self._kick(loop)
        return waiter

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiters:
                frames, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                durable = any(d for _, d, _ in waiters)
                try:
                    positions = await loop.run_in_executor(
                        self._executor, self._write, frames, durable
                    )
                except OSError as exc:
                    for waiter, _, _ in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                it = iter(positions)
                for waiter, _, has_frame in waiters:
                    pos = next(it) if has_frame else None  # a barrier gets None
                    if not waiter.done():
                        waiter.set_result(pos)
        finally:
            self._flusher = None

    def _write(self, frames: list[bytes], durable: bool) -> list[Position]:
        """Write one batch (and fdatasync it when asked); runs in a worker thread."""
        size = sum(len(f) for f in frames)
        if frames and self._end > 0 and self._end + size > self.segment_bytes:
            self._rotate()
        start = self._end
        out: list[Position] = []
        if frames:
            try:
                write_all(self._fd, b"".join(frames))
            except OSError:
                # Undo a partial write so no torn frame sits before later good ones.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
                raise
            offset = start
            for frame in frames:
                out.append((self.seq, offset))
                offset += len(frame)
            self._end = offset
            self.writes += 1
            self.frames += len(frames)
            fault("spool.journal-written")
        if durable:
            os.fdatasync(self._fd)
            self.syncs += 1
            fault("spool.journal-synced")
        return out

    def _rotate(self) -> None:
        """Close the full segment (synced) and start the next one."""
        os.fdatasync(self._fd)
        closed = self.seq
        self.start(self.seq + 1)
        self.on_rotate.append(closed)

    async def drain(self) -> None:
        """Write and sync everything queued; the spool calls this before closing."""
        if self._waiters or self._pending:
            await self.barrier()
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    def flush_now(self) -> None:
        """Write and sync what is still queued, in this thread (a stop without the loop)."""
        frames, self._pending = self._pending, []
        self._waiters = []
        if self._fd >= 0 and frames:
            self._write(frames, True)

    def close(self) -> None:
        """Sync and close the current segment (blocking; after drain or flush_now)."""
        if self._fd >= 0:
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1
