"""The envelope of a message: who sent it, to whom, and where it came from.

An Envelope is what the spool stores beside the message bytes. It is frozen:
a stage that changes recipients makes a new envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class Envelope:
    """SMTP envelope plus the facts later stages need (trace id, client, auth)."""

    mail_from: str  # "" is the null reverse-path <>
    rcpts: tuple[str, ...]
    trace_id: str
    received_at: float
    client_ip: str = ""
    helo: str = ""
    auth_login: str = ""
    attempts: int = 0
    next_try: float = 0.0
    # Extra per-message facts, e.g. original recipient of a catchall, hop count.
    meta: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def with_rcpts(self, rcpts: tuple[str, ...]) -> Envelope:
        """The same envelope for other recipients."""
        return replace(self, rcpts=rcpts)

    def get(self, key: str, default: str = "") -> str:
        """A meta value by key."""
        for k, v in self.meta:
            if k == key:
                return v
        return default

    def with_meta(self, key: str, value: str) -> Envelope:
        """The same envelope with one meta value set."""
        kept = tuple((k, v) for k, v in self.meta if k != key)
        return replace(self, meta=(*kept, (key, value)))
