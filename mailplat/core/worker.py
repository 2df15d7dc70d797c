"""The wake-up protocol of a queue worker (MTA agent, local and outbound delivery).

A worker sleeps until kicked (new work in its queue) or its poll interval
passes, and stops between batches when asked, never inside a spool write:
request_stop() sets the flag and wakes it so run() returns after the batch
in progress. Subclasses write run() around `while not self.stopping:` and
`await self.wait_for_kick(seconds)`.
"""

from __future__ import annotations

import asyncio
import contextlib


class Worker:
    """kick / request_stop / wait_for_kick, shared by every queue worker."""

    def __init__(self) -> None:
        self._kick = asyncio.Event()
        self._stopping = False

    @property
    def stopping(self) -> bool:
        return self._stopping

    def kick(self) -> None:
        """Work arrived: wake the worker now instead of at its next poll."""
        self._kick.set()

    def request_stop(self) -> None:
        """Finish the batch in progress (nothing cut mid-write), then return from run()."""
        self._stopping = True
        self._kick.set()

    async def wait_for_kick(self, seconds: float) -> None:
        """Until kicked or `seconds` passed; clears the kick."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), seconds)
        self._kick.clear()
