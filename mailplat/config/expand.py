"""Follow an address to its final destinations: groups, redirects, aliases, catchalls.

Pure: (Directory, recipient) -> Expansion, a list of Destinations plus a
human-readable trace (what `mailplat route` prints). Loop-safe: an address
seen once on the path is not followed again, and depth is bounded.
Duplicates are removed, so a mailbox reached twice gets one copy.
The MTA, `mailplat route` and expect.yaml all use this one function, so the
explanation a user reads is the routing the server does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mailplat.config.directory import Directory, Kind
from mailplat.core.address import Address, try_parse

DestKind = Literal["mailbox", "list", "remote", "reject"]
MAX_DEPTH = 20


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one copy of a message goes."""

    kind: DestKind
    target: str  # mailbox key, list address, remote address, or the rejected address
    rcpt: str  # the envelope recipient this came from
    reason: str = ""
    catchall: bool = False
    via: str | None = None  # smart host of a forwarded domain

    @property
    def label(self) -> str:
        """`mailbox:po/name`, `list:addr`, `remote:addr` or `reject` (expect.yaml's notation)."""
        return "reject" if self.kind == "reject" else f"{self.kind}:{self.target}"


@dataclass
class Expansion:
    destinations: list[Destination] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [d.label for d in self.destinations]


def expand(directory: Directory, rcpt: Address) -> Expansion:
    """All destinations of one recipient, loop-safe and without duplicates."""
    out = Expansion()
    seen: set[str] = set()
    _walk(directory, rcpt, rcpt.key, out, seen, depth=0, catchall=False)
    if not out.destinations:
        # Every branch ended in a loop or an empty group: say so rather than drop
        # the recipient silently (mail never goes nowhere).
        out.trace.append(f"{rcpt.key}: no destination left after expansion, rejected")
        out.destinations.append(Destination("reject", rcpt.key, rcpt.key, "no destination (loop)"))
    unique: dict[str, Destination] = {}
    for d in out.destinations:
        unique.setdefault(d.label if d.kind != "reject" else f"reject:{d.target}", d)
    out.destinations = list(unique.values())
    return out


def _walk(
    directory: Directory,
    address: Address,
    rcpt: str,
    out: Expansion,
    seen: set[str],
    depth: int,
    catchall: bool,
) -> None:
    pad = "  " * depth
    key = address.key
    if key in seen:
        out.trace.append(f"{pad}{key}: already expanded on this path (loop), skipped")
        return
    if depth > MAX_DEPTH:
        out.trace.append(f"{pad}{key}: too deep (>{MAX_DEPTH}), skipped")
        out.destinations.append(Destination("reject", key, rcpt, "expansion too deep"))
        return
    seen = seen | {key}
    step = directory.resolve(address)
    out.trace.append(f"{pad}{key}: {step.reason}")
    catchall = catchall or step.catchall
    if step.kind is Kind.MAILBOX:
        entry = directory.mailboxes[step.target]
        redirect = entry.model.redirect
        if redirect is not None:
            out.trace.append(
                f"{pad}  redirects to {', '.join(redirect.to)}"
                + (" (keeping a copy)" if redirect.keep_copy else "")
            )
            if redirect.keep_copy:
                out.destinations.append(Destination("mailbox", entry.key, rcpt, catchall=catchall))
            for target in redirect.to:
                _follow(directory, target, rcpt, out, seen, depth, catchall)
        else:
            out.destinations.append(Destination("mailbox", entry.key, rcpt, catchall=catchall))
    elif step.kind is Kind.GROUP:
        group = directory.groups[step.target]
        out.trace.append(f"{pad}  group members: {', '.join(group.members) or '(none)'}")
        for member in group.members:
            _follow(directory, member, rcpt, out, seen, depth, catchall)
    elif step.kind is Kind.LIST:
        out.destinations.append(Destination("list", step.target, rcpt))
    elif step.kind is Kind.ALIAS:
        _follow(directory, step.target, rcpt, out, seen, depth, catchall)
    elif step.kind is Kind.REMOTE:
        # RFC 5321 §2.4: only the remote host may fold its local parts' case.
        out.destinations.append(Destination("remote", address.text, rcpt, step.reason))
    elif step.kind is Kind.SMARTHOST:
        dom = directory.domains[address.domain]
        out.destinations.append(
            Destination("remote", address.text, rcpt, step.reason, via=dom.smart_host)
        )
    else:
        out.destinations.append(Destination("reject", key, rcpt, step.reason))


def _follow(
    directory: Directory,
    target: str,
    rcpt: str,
    out: Expansion,
    seen: set[str],
    depth: int,
    catchall: bool,
) -> None:
    parsed = try_parse(target)
    if parsed is None:
        out.trace.append(f"{'  ' * (depth + 1)}{target}: not a valid address, skipped")
        out.destinations.append(Destination("reject", target, rcpt, "invalid target address"))
        return
    _walk(directory, parsed, rcpt, out, seen, depth + 1, catchall)
