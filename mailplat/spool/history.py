"""Delivery history kept in a queue record: every attempt with its time, host and reply.

Input: a record's Envelope and what one attempt did. Output: the same
envelope with one more `attempt:<n>` meta entry (JSON: {"at", "results":
[{"result", "rcpts", "host", "reply"}]}), so the history is written with the
record it belongs to and survives restarts, moves to badmail and resends.
Guarantee: the record stays bounded; past MAX_ATTEMPTS the oldest entries go.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from mailplat.core.envelope import Envelope

PREFIX = "attempt:"
MAX_ATTEMPTS = 50


def _number(key: str) -> int:
    try:
        return int(key[len(PREFIX) :])
    except ValueError:
        return 0


def add_attempt(env: Envelope, at: float, results: list[dict[str, Any]]) -> Envelope:
    """env with one more attempt in its history (the oldest dropped past MAX_ATTEMPTS)."""
    old = [(k, v) for k, v in env.meta if k.startswith(PREFIX)]
    rest = [(k, v) for k, v in env.meta if not k.startswith(PREFIX)]
    number = max((_number(k) for k, _ in old), default=0) + 1
    entry = (f"{PREFIX}{number}", json.dumps({"at": round(at, 3), "results": results}))
    kept = [*old, entry][-MAX_ATTEMPTS:]
    return replace(env, meta=(*rest, *kept))


def attempts(env: Envelope) -> list[dict[str, Any]]:
    """The history of a record, oldest first: {"n", "at", "results": [...]} per attempt."""
    out = []
    for key, value in env.meta:
        if not key.startswith(PREFIX):
            continue
        try:
            entry = json.loads(value)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append({"n": _number(key), **entry})
    return sorted(out, key=lambda e: int(e["n"]))
