"""Group-committed directory fsyncs.

A rename or link is not durable until its directory is fsynced. DirSyncer
batches that: every caller that renamed into a directory waits for one fsync
that *started after* its rename, and all callers that arrive while an fsync
runs share the next one. Local delivery uses it for Maildir new/ folders:
under 50 concurrent deliveries that is a handful of directory fsyncs per
second instead of one per message, and no delivery is marked done before its
own link is on disk.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path

from mailplat.core.durable import fsync_dir

__all__ = ["DirSyncer", "fsync_dir"]


class DirSyncer:
    """Coalesces directory fsyncs across concurrent callers (group commit)."""

    def __init__(self, executor: Executor | None = None) -> None:
        self._executor = executor
        self._waiting: dict[Path, list[asyncio.Future[None]]] = {}
        self._running: set[Path] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # kept so they are not collected
        self.requests = 0
        self.commits = 0

    async def sync(self, path: Path) -> None:
        """Return once a directory fsync that began after this call has finished."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.setdefault(path, []).append(waiter)
        self.requests += 1
        if path not in self._running:
            self._running.add(path)
            task = loop.create_task(self._commit_loop(path))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await waiter

    async def sync_all(self, paths: set[Path]) -> None:
        await asyncio.gather(*(self.sync(p) for p in paths))

    async def _commit_loop(self, path: Path) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting.get(path):
                # Everyone waiting now renamed before this fsync starts.
                batch = self._waiting.pop(path)
                try:
                    await loop.run_in_executor(self._executor, fsync_dir, path)
                except OSError as exc:
                    for waiter in batch:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                self.commits += 1
                for waiter in batch:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._running.discard(path)
