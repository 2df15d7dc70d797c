"""Inbound SMTP policy, pure: (Directory, session facts, address) -> reply or None.

Every RCPT decision of issue #3 lives here so it can be unit-tested without a
socket: blocked addresses, disabled domains and mailboxes, unknown users and
catchalls, sender blacklists, relay rules, quota-full mailboxes. None means
"accept". Replies come from core.replies and never name config objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailplat.auth.relay import Client, decide
from mailplat.config.directory import Directory, Kind
from mailplat.core import replies
from mailplat.core.address import Address


@dataclass(frozen=True, slots=True)
class RcptVerdict:
    """The reply for a RCPT (None = accept), and a reason for the log."""

    reply: str | None
    reason: str
    failure: bool = False  # counts toward security.max_failures
    mailbox: str | None = None  # the mailbox an accepted recipient reaches directly


def check_sender(directory: Directory, sender: Address | None, login_key: str | None) -> str | None:
    """MAIL FROM policy: an authenticated user may only use their own addresses."""
    if sender is None or login_key is None:
        return None
    if not directory.site.security.auth_sender_must_match:
        return None
    mailbox = directory.mailboxes.get(login_key)
    if mailbox is None or not directory.owns_address(mailbox, sender):
        return replies.S550_SENDER_NOT_OWNED
    return None


def check_rcpt(
    directory: Directory,
    client: Client,
    rcpt: Address,
    room: Callable[[str], int | None],
    declared_size: int = 0,
) -> RcptVerdict:
    """The RCPT TO verdict for one parsed recipient.

    `room(mailbox key)` is the space a mailbox has left (None: no quota);
    `declared_size` the client's SIZE= (0 when it gave none).
    """
    smtp = directory.site.smtp
    if smtp.blocked_recipients and rcpt.key in {a.lower() for a in smtp.blocked_recipients}:
        return RcptVerdict(replies.S550_BLOCKED_ADDRESS, "blocked recipient", True)
    step = directory.resolve(rcpt)
    if step.kind is Kind.REMOTE:
        verdict = decide(directory, client, rcpt)
        if verdict.allowed:
            return RcptVerdict(None, f"relay allowed: {verdict.reason}")
        return RcptVerdict(replies.S550_RELAY_DENIED, f"relay denied: {verdict.reason}", True)
    dom = directory.domains.get(rcpt.domain)
    if (
        dom is not None
        and client.sender is not None
        and client.sender.domain in dom.sender_blacklist
    ):
        return RcptVerdict(
            replies.S550_SENDER_BLACKLISTED, f"sender domain blacklisted by {dom.name}", True
        )
    if step.kind is Kind.DISABLED:
        reply = (
            replies.S550_DOMAIN_DISABLED
            if step.reason.startswith("domain")
            else replies.S550_MAILBOX_DISABLED
        )
        return RcptVerdict(reply, step.reason, True)
    if step.kind is Kind.UNKNOWN:
        return RcptVerdict(replies.S550_NO_SUCH_USER, step.reason, True)
    if step.kind is Kind.MAILBOX:
        return _quota(directory, step.target, room, declared_size, step.reason)
    return RcptVerdict(None, step.reason)


def _quota(
    directory: Directory,
    mailbox: str,
    room: Callable[[str], int | None],
    declared_size: int,
    reason: str,
) -> RcptVerdict:
    """RFC 1870 §6: refuse at RCPT what cannot fit, before the data is sent."""
    entry = directory.mailboxes.get(mailbox)
    if entry is not None and entry.quota_bytes is not None and declared_size > entry.quota_bytes:
        return RcptVerdict(
            replies.S552_MAILBOX_FULL, f"SIZE {declared_size} is over the quota of {mailbox}"
        )
    left = room(mailbox)
    if left is not None and left < max(declared_size, 1):
        return RcptVerdict(replies.S452_MAILBOX_FULL, f"mailbox {mailbox} is full")
    return RcptVerdict(None, reason, mailbox=mailbox)
