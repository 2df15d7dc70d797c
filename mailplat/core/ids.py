"""Queue ids and trace ids.

One id names a message from the SMTP transaction that accepted it to the Maildir
file that holds it, so `mailplat trace ID` can follow it. Ids sort by time.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def _b32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_id() -> str:
    """A 20-character, time-ordered, collision-resistant id (ULID-like)."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(7), "big")
    return _b32(millis, 9) + _b32(rand, 11)


def is_id(text: str) -> bool:
    """True when `text` looks like an id from new_id (safe as a file name)."""
    return len(text) == 20 and all(c in _ALPHABET for c in text)
