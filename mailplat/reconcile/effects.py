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

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from mailplat.config.load import SiteConfig
from mailplat.core.netmatch import is_open_range
from mailplat.reconcile.diff import Plan
from mailplat.store.paths import check_name, mailbox_dir

LISTENERS = ("smtp", "submission", "smtps", "pop3", "pop3s")


@dataclass(frozen=True, slots=True)
class Observed:
    """What is on disk now: existing Maildirs and message counts, by mailbox key."""

    data_root: Path
    existing: frozenset[str] = frozenset()
    messages: Mapping[str, int] = field(default_factory=dict)
    # Only these postoffices were looked at (a running server's reload); None: all.
    only: frozenset[str] | None = None


class MaildirToCreate(NamedTuple):
    """A Maildir apply creates (a tuple: a first apply lists 100,000)."""

    mailbox: str  # "po/name"
    data_root: Path
    welcome: bool  # the postoffice has a welcome message for it

    @property
    def path(self) -> Path:
        # Made when asked: a first plan lists 100,000 of these and shows 25.
        return maildir_path(self.data_root, self.mailbox)


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


def mailbox_keys(config: SiteConfig, only: Iterable[str] | None = None) -> list[str]:
    """`po/name` of every mailbox (of the postoffices in `only`, when given)."""
    pos = config.postoffices
    names = pos if only is None else [n for n in only if n in pos]
    return [f"{po_name}/{mb}" for po_name in names for mb in pos[po_name].mailboxes]


def existing_maildirs(data_root: Path, keys: Iterable[str]) -> set[str]:
    """The keys (`po/name`) whose Maildir (new/, cur/ and tmp/) exists under data_root.

    One listing of the postoffices folder, one per postoffice folder there
    and three stats per mailbox found in it: a first plan of 100,000
    mailboxes does not stat 300,000 paths that are not there.
    """
    base = f"{data_root}/postoffices"
    try:
        present_pos = {e.name for e in os.scandir(base)}
    except OSError:
        return set()
    by_po: dict[str, list[str]] = {}
    for key in keys:
        po, _, name = key.partition("/")
        if po in present_pos:
            by_po.setdefault(po, []).append(name)
    found: set[str] = set()
    isdir = os.path.isdir
    for po, names in by_po.items():
        check_name(po, "postoffice name")
        folder = f"{base}/{po}"
        try:
            present = {e.name for e in os.scandir(folder)}
        except OSError:
            continue
        for name in names:
            if name in present:
                check_name(name, "mailbox name")
                path = f"{folder}/{name}"
                if isdir(f"{path}/new") and isdir(f"{path}/cur") and isdir(f"{path}/tmp"):
                    found.add(f"{po}/{name}")
    return found


def effects(plan: Plan, config: SiteConfig, observed: Observed) -> Effects:
    """What applying `plan` does besides recording the new generation."""
    root = observed.data_root
    existing = observed.existing
    pos = config.postoffices
    names = pos if observed.only is None else [n for n in pos if n in observed.only]
    maildirs = tuple(
        MaildirToCreate(key, root, welcome)
        for po_name in names
        for welcome in (pos[po_name].welcome is not None,)
        for mb in pos[po_name].mailboxes
        if (key := f"{po_name}/{mb}") not in existing
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
