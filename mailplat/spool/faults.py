"""Named crash points for durability tests (RELIABILITY.md "Harness techniques").

Input: the MAILPLAT_FAULT environment variable, `<point>:<nth>` (nth defaults
to 1), read once on first use. Output: at the nth call of `fault(point)` with
that name the process dies with os._exit(137), like a kill -9: no cleanup, no
flush, no finally blocks. Guarantee: without the variable, `fault` does nothing.
"""

from __future__ import annotations

import os

_target: tuple[str, int] | None = None
_loaded = False
_hits = 0


def _load() -> None:
    global _target, _loaded
    _loaded = True
    spec = os.environ.get("MAILPLAT_FAULT", "").strip()
    if not spec:
        return
    point, _, nth = spec.partition(":")
    try:
        count = int(nth) if nth else 1
    except ValueError:
        count = 1
    _target = (point, max(count, 1))


def fault(point: str) -> None:
    """Die here (exit 137) when MAILPLAT_FAULT names this point and this is its nth hit."""
    global _hits
    if not _loaded:
        _load()
    if _target is None or _target[0] != point:
        return
    _hits += 1
    if _hits >= _target[1]:
        os._exit(137)
