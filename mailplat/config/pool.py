"""Run per-item work on two cores: a forked child does the first step of a share.

Input: items, a first step `prepare` whose result is plain data (cheap to
pickle) and a second step `finish`. Output: exactly
`[finish(i, prepare(i)) for i in items]`, in order. Reading a big site is
per-file work in pure Python: parsing YAML gives plain dicts and lists,
which pickle fast; validating into models and compiling give objects that
cost as much to pickle as to build. So a forked child parses a share of the
files while this process reads the rest to the end; then this process
finishes the child's share from the data it sent through a pipe.

Only when it is safe and pays: os.fork exists, this process runs a single
thread (forking a threaded process can copy a held lock; the running
server's reloads happen in a thread, so they never fork), two or more CPUs,
and enough items. Anything going wrong in the child (an exception, a crash,
a result that does not load) makes this process do the child's share itself:
the answer never depends on the child.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")

MIN_ITEMS = 400  # below this a fork and a pickle cost more than they save
# The child's share: it only parses (about 40% of a file's work), the parent
# finishes its own files meanwhile and the child's afterwards.
CHILD_SHARE = 0.6


def can_fork(items: int) -> bool:
    return (
        items >= MIN_ITEMS
        and hasattr(os, "fork")
        and threading.active_count() == 1
        and (os.cpu_count() or 1) >= 2
        and os.environ.get("MAILPLAT_NO_FORK") != "1"
    )


def map_in_two(
    prepare: Callable[[T], P], finish: Callable[[T, P], R], items: Sequence[T]
) -> list[R]:
    """[finish(i, prepare(i)) for i in items]; a forked child runs `prepare` on a share."""
    if not can_fork(len(items)):
        return [finish(i, prepare(i)) for i in items]
    split = int(len(items) * CHILD_SHARE)
    theirs, mine = items[:split], items[split:]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, leave without running any cleanup
        os.close(read_fd)
        status = 1
        try:
            data = pickle.dumps([prepare(i) for i in theirs], pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    done = [finish(i, prepare(i)) for i in mine]
    with os.fdopen(read_fd, "rb") as source:
        data = source.read()
    _, status = os.waitpid(pid, 0)
    prepared: list[P] | None = None
    if status == 0:
        try:
            loaded = pickle.loads(data)  # noqa: S301 - our own child, through our own pipe
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
            loaded = None
        if isinstance(loaded, list) and len(loaded) == len(theirs):
            prepared = loaded
    if prepared is None:
        prepared = [prepare(i) for i in theirs]
    return [finish(i, p) for i, p in zip(theirs, prepared, strict=True)] + done
