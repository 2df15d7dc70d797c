"""Effects of a plan on the world outside the YAML, PURE.

Input: a Plan, the new SiteConfig and what was observed on disk (which
Maildirs exist, how many messages removed mailboxes hold) as an Observed
value; the I/O of observing lives in reconcile/apply.py. Output: Effects:
Maildirs to create (level-based: every mailbox whose Maildir is missing, not
only new ones, so a deleted folder is recreated), welcome messages to
deliver, mail kept for removed mailboxes and where, listeners to rebind, and
warnings about dangerous settings (guarantee 5: the plan warns about an open
relay). No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailplat.config.load import SiteConfig
from mailplat.core.netmatch import is_open_range
from mailplat.reconcile.diff import Plan
from mailplat.store.paths import mailbox_dir

LISTENERS = ("smtp", "submission", "smtps", "pop3", "pop3s")


@dataclass(frozen=True, slots=True)
class Observed:
    """What is on disk now: existing Maildirs and message counts, by mailbox key."""

    data_root: Path
    existing: frozenset[str] = frozenset()
    messages: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MaildirToCreate:
    mailbox: str  # "po/name"
    path: Path
    welcome: bool  # the postoffice has a welcome message for it


@dataclass(frozen=True, slots=True)
class KeptMail:
    """A removed mailbox: its Maildir stays where it is, with its messages."""

    mailbox: str
    path: Path
    messages: int
    exists: bool


@dataclass(frozen=True)
class Effects:
    maildirs: tuple[MaildirToCreate, ...] = ()
    kept: tuple[KeptMail, ...] = ()
    rebind: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def actionable(self) -> bool:
        """True when apply would change something on disk (Maildirs to create)."""
        return bool(self.maildirs)


def maildir_path(data_root: Path, mailbox_key: str) -> Path:
    """The Maildir of `po/name` under a data root."""
    po, name = mailbox_key.split("/", 1)
    return mailbox_dir(data_root, po, name)


def mailbox_keys(config: SiteConfig) -> list[str]:
    return [f"{po_name}/{mb}" for po_name, po in config.postoffices.items() for mb in po.mailboxes]


def effects(plan: Plan, config: SiteConfig, observed: Observed) -> Effects:
    """What applying `plan` does besides recording the new generation."""
    root = observed.data_root
    maildirs = tuple(
        MaildirToCreate(
            key,
            maildir_path(root, key),
            welcome=config.postoffices[key.split("/", 1)[0]].welcome is not None,
        )
        for key in mailbox_keys(config)
        if key not in observed.existing
    )
    kept = tuple(
        KeptMail(
            c.name,
            maildir_path(root, c.name),
            observed.messages.get(c.name, 0),
            c.name in observed.existing,
        )
        for c in plan.of("mailbox", "-")
    )
    rebind: list[str] = []
    for change in plan.of("site-section"):
        if change.name != "listeners" or change.action != "~":
            continue
        for name in LISTENERS:
            if (change.before or {}).get(name) != (change.after or {}).get(name):
                rebind.append(name)
    return Effects(maildirs, kept, tuple(rebind), tuple(_warnings(plan, config)))


def _warnings(plan: Plan, config: SiteConfig) -> list[str]:
    out: list[str] = []
    relay = config.site.relay
    if relay.enabled and relay.allow_local_senders:
        out.append(
            "relay.allow_local_senders is on: anyone who forges a local From address "
            "can relay through this server"
        )
    if relay.enabled:
        for pattern in relay.privileged_ips:
            if is_open_range(pattern):
                out.append(
                    f"relay.privileged_ips has {pattern}, which matches every client: "
                    "this server is an OPEN RELAY"
                )
    added = {c.short_name for c in plan.of("domain", "+")}
    for change in plan.of("domain", "-"):
        if change.short_name in added:
            continue  # moved to another postoffice, still ours
        out.append(
            f"domain {change.short_name} is removed: its mail is no longer accepted here "
            "(it counts as a remote domain)"
        )
    for change in plan.of("list", "-"):
        out.append(
            f"list {change.name} is removed: its runtime subscribers stay in state/ "
            "and return if the list is added again"
        )
    return out
