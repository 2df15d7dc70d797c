"""Error types shared by every layer.

MailplatError is the base; the CLI turns it into a message and an exit code.
ProtocolError carries the reply to send, whether the client was at fault, and a
detail for the log that never reaches the client (maddy's rule).
"""

from __future__ import annotations

from collections.abc import Sequence


class MailplatError(Exception):
    """Base of every error mailplat raises on purpose."""

    exit_code = 1


class ConfigError(MailplatError):
    """A site could not be loaded or validated; carries every diagnostic."""

    def __init__(
        self, diagnostics: Sequence[object], message: str = "configuration is invalid"
    ) -> None:
        super().__init__(message)
        self.diagnostics = list(diagnostics)


class AddressError(MailplatError, ValueError):
    """A string is not a usable mail address."""


class ProtocolError(MailplatError):
    """A protocol turn failed: `reply` goes to the client, `detail` to the log."""

    def __init__(self, reply: str, *, user_side: bool = True, detail: str = "") -> None:
        super().__init__(detail or reply)
        self.reply = reply
        self.user_side = user_side
        self.detail = detail


class TemporaryFailure(MailplatError):
    """Something we cannot do now but may later (disk full, lock held)."""
