"""Plan: what changes between the applied snapshot and the working tree, PURE.

Input: the last applied Snapshot (or None before the first apply) and the new
SiteConfig. Output: a Plan, a tiny closed vocabulary as in Terraform: each
Change is `+` (add), `~` (change) or `-` (remove) of one object (a site.yaml
section, a postoffice's own settings, a domain, mailbox, group or list), with
the fields that changed; plus the routing diff: every address whose final
destinations (config.expand labels) differ between the two configs.
Computing a plan and rendering it are separate: cli/plan_view renders this as
text or JSON. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError

from mailplat.config.directory import Directory
from mailplat.config.expand import expand
from mailplat.config.load import SiteConfig
from mailplat.config.models.postoffice import Postoffice
from mailplat.config.models.site import Site
from mailplat.core.address import Address, try_parse
from mailplat.reconcile.state import (
    SNAPSHOT_FORMAT,
    Generation,
    Snapshot,
    dump_postoffice,
    site_snapshot,
    snapshot,
)

Action = Literal["+", "~", "-"]
ObjectKind = Literal["site-section", "postoffice", "domain", "mailbox", "group", "list"]

COLLECTIONS: dict[str, ObjectKind] = {
    "domains": "domain",
    "mailboxes": "mailbox",
    "groups": "group",
    "lists": "list",
}
_KIND_RANK = {"site-section": 0, "postoffice": 1, "domain": 2, "mailbox": 3, "group": 4, "list": 5}
# Stands for "an address nobody has" on a domain: shows catchall and reject changes.
PROBE_LOCAL = "mailplat-any-other-address"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One leaf that differs: a dotted path inside the object, before and after."""

    path: str
    before: Any
    after: Any


class Change(NamedTuple):
    """One object added, changed or removed.

    A NamedTuple, not a dataclass: a first plan of a big site holds 130,000
    of them, and a tuple is made three times faster.
    """

    action: Action
    kind: ObjectKind
    name: str  # "relay", "example", "example/alice", "example/example.test"
    before: Any
    after: Any
    fields: tuple[FieldChange, ...] = ()

    @property
    def postoffice(self) -> str | None:
        if self.kind == "site-section":
            return None
        return self.name.split("/", 1)[0]

    @property
    def short_name(self) -> str:
        """The name inside its postoffice (the mailbox name for `example/alice`)."""
        return self.name.split("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class RouteChange:
    """An address whose destinations differ; `*@domain` stands for unknown addresses."""

    address: str
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """Every change, in a stable order, and the routing diff."""

    changes: tuple[Change, ...]
    routing: tuple[RouteChange, ...]
    first: bool  # nothing was applied before
    old_digest: str | None
    new_digest: str
    notes: tuple[str, ...] = ()
    # The new config's snapshot, kept so apply does not serialise it twice.
    new_snapshot: Snapshot | None = field(default=None, compare=False, repr=False)

    @property
    def empty(self) -> bool:
        return not self.changes

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def of(self, kind: ObjectKind, action: Action | None = None) -> list[Change]:
        return [
            c for c in self.changes if c.kind == kind and (action is None or c.action == action)
        ]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted leaves; lists and scalars are leaves."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def field_changes(before: Any, after: Any) -> tuple[FieldChange, ...]:
    """The leaves that differ between two JSON values."""
    old, new = _flatten(before), _flatten(after)
    out = []
    for key in list(old) + [k for k in new if k not in old]:
        a, b = old.get(key), new.get(key)
        if a != b:
            out.append(FieldChange(key, a, b))
    return tuple(out)


def _sort_key(change: Change) -> tuple[int, str, int, str]:
    if change.kind == "site-section":
        # site.yaml's own order (server, listeners, smtp, ...), not alphabetical.
        order = list(Site.model_fields)
        rank = order.index(change.name) if change.name in order else len(order)
        return (0, "", rank, change.name)
    po = change.postoffice or ""
    return (1, po, _KIND_RANK[change.kind], change.name)


def _changed_snapshot(
    old: Snapshot, new: SiteConfig, applied: Generation
) -> tuple[Snapshot, set[str]]:
    """The new snapshot made from the old one, and the postoffices that may differ.

    A postoffice whose file has the digest recorded in `applied` has the
    same snapshot (a snapshot is a function of the file's text).
    """
    old_pos: dict[str, Any] = old.get("postoffices", {})
    digests = applied.po_digests
    changed = {name for name, d in new.po_digests.items() if digests.get(name) != d}
    changed |= {name for name in new.postoffices if name not in old_pos}
    removed = set(old_pos) - set(new.postoffices)
    pos = old_pos.copy()
    for name in removed:
        del pos[name]
    for name in changed:
        po = new.postoffices.get(name)
        if po is not None:
            pos[name] = dump_postoffice(po)
    same_site = bool(applied.site_digest) and applied.site_digest == new.site_digest
    site = old.get("site") if same_site else site_snapshot(new)
    return {**old, "format": SNAPSHOT_FORMAT, "site": site, "postoffices": pos}, changed | removed


def diff_snapshots(
    old: Snapshot | None, new: Snapshot, only: set[str] | None = None
) -> tuple[Change, ...]:
    """The object changes between two snapshots (no routing), in the plan's order.

    Postoffices whose snapshot is equal (one deep comparison, in C) are
    skipped whole; the others are split into their objects. The order is
    site.yaml's sections, then each postoffice by name, its objects by kind
    (postoffice, domain, mailbox, group, list) and name. `only` limits the
    postoffices compared to those named (the others are known equal).
    """
    old = old or {}
    changes: list[Change] = []
    site_before, site_after = old.get("site", {}), new.get("site", {})
    sections: list[tuple[ObjectKind, str]] = [("site-section", s) for s in site_after]
    sections += [("site-section", s) for s in site_before if s not in site_after]
    site_changes = _changes(
        {k: site_before[k[1]] for k in sections if k[1] in site_before},
        {k: site_after[k[1]] for k in sections if k[1] in site_after},
    )
    changes += sorted(site_changes, key=_sort_key)
    pos_before, pos_after = old.get("postoffices", {}), new.get("postoffices", {})
    names = set(pos_before) | set(pos_after) if only is None else only
    for name in sorted(names):
        before, after = pos_before.get(name), pos_after.get(name)
        if before is after or before == after:
            continue
        if before is None and after is not None:
            changes += _added(name, after)  # every object new: no comparison to make
        else:
            changes += _changes(_po_objects(name, before), _po_objects(name, after))
    return tuple(changes)


def _all_added(config: SiteConfig) -> tuple[Change, ...]:
    """Every object of a config as added, by name only, in the plan's order."""
    out = [
        Change("+", "site-section", info.alias or name, None, None)
        for name, info in Site.model_fields.items()
    ]
    for po_name in sorted(config.postoffices):
        po = config.postoffices[po_name]
        out.append(Change("+", "postoffice", po_name, None, None))
        for coll, kind in COLLECTIONS.items():
            out += [
                Change("+", kind, f"{po_name}/{n}", None, None) for n in sorted(getattr(po, coll))
            ]
    return tuple(out)


def _added(po_name: str, po: dict[str, Any]) -> list[Change]:
    """A new postoffice's objects, all `+`, in the plan's order."""
    out = [
        Change(
            "+", "postoffice", po_name, None, {k: v for k, v in po.items() if k not in COLLECTIONS}
        )
    ]
    for coll, kind in COLLECTIONS.items():
        members = po.get(coll) or {}
        out += [Change("+", kind, f"{po_name}/{n}", None, members[n]) for n in sorted(members)]
    return out


def _po_objects(po_name: str, po: dict[str, Any] | None) -> dict[tuple[ObjectKind, str], Any]:
    """A postoffice's snapshot split into objects, in the plan's order."""
    if po is None:
        return {}
    out: dict[tuple[ObjectKind, str], Any] = {
        ("postoffice", po_name): {k: v for k, v in po.items() if k not in COLLECTIONS}
    }
    for coll, kind in COLLECTIONS.items():
        for name in sorted(po.get(coll) or {}):
            out[(kind, f"{po_name}/{name}")] = po[coll][name]
    return out


def _changes(
    before: dict[tuple[ObjectKind, str], Any], after: dict[tuple[ObjectKind, str], Any]
) -> list[Change]:
    """+ ~ - for two object maps; both in the plan's order, the result too."""
    out: list[Change] = []
    keys = list(after) + [k for k in before if k not in after]
    if before and after:
        keys.sort(key=lambda k: (_KIND_RANK[k[0]], k[1]))
    for key in keys:
        kind, name = key
        if key not in before:
            out.append(Change("+", kind, name, None, after[key]))
        elif key not in after:
            out.append(Change("-", kind, name, before[key], None))
        elif before[key] != after[key]:
            value = after[key]
            out.append(
                Change("~", kind, name, before[key], value, field_changes(before[key], value))
            )
    return out


def config_from_snapshot(snap: Snapshot, digest: str = "") -> SiteConfig:
    """Rebuild a SiteConfig (enough for a Directory) from an applied snapshot.

    Raises ValueError when the snapshot no longer fits the models (a format
    change between versions); callers then skip the routing diff.
    """
    try:
        site = Site.model_validate(snap.get("site", {}))
        postoffices = {
            name: Postoffice.model_validate(data)
            for name, data in snap.get("postoffices", {}).items()
        }
    except ValidationError as exc:
        raise ValueError(f"the applied snapshot does not fit the current models: {exc}") from exc
    return SiteConfig(
        root=Path("."),
        name="applied",
        site=site,
        postoffices=postoffices,
        files={},
        site_file="(applied)",
        expect=None,
        digest=digest,
    )


def _probe_addresses(directory: Directory) -> set[str]:
    out = set(directory.addresses)
    for domain in directory.domains:
        out.add(f"abuse@{domain}")
        out.add(f"postmaster@{domain}")
        out.add(f"*@{domain}")
    return out


def _labels(directory: Directory, address: str) -> tuple[str, ...]:
    if address.startswith("*@"):
        parsed: Address | None = Address(PROBE_LOCAL, address[2:])
    else:
        parsed = try_parse(address)
    if parsed is None:
        return ("reject",)
    return tuple(sorted(set(expand(directory, parsed).labels)))


def routing_diff(old: Directory, new: Directory) -> tuple[RouteChange, ...]:
    """Addresses (known to either config) whose destinations differ."""
    out = []
    for address in sorted(_probe_addresses(old) | _probe_addresses(new)):
        before, after = _labels(old, address), _labels(new, address)
        if before != after:
            out.append(RouteChange(address, before, after))
    return tuple(out)


def diff(
    old_snapshot: Snapshot | None,
    new: SiteConfig,
    old_digest: str | None = None,
    new_directory: Directory | None = None,
    routing_changes: bool = True,
    applied: Generation | None = None,
    values: bool = True,
) -> Plan:
    """The plan from the applied snapshot to the new config.

    routing_changes=False skips the routing diff (it expands every address
    twice): a running server's reload does not show it, the plan command does.
    With `applied` (the generation the snapshot is from) knowing each file's
    digest, only the postoffices whose file changed are dumped and compared;
    the others keep the applied snapshot's entries. values=False, with
    nothing applied yet, names every object as added without dumping any
    (before and after are None, there is no new_snapshot): what a text plan
    of a first apply shows.
    """
    new_snap: Snapshot | None
    if old_snapshot is None and not values:
        new_snap, changes = None, _all_added(new)
    elif (
        applied is not None
        and applied.po_digests
        and old_snapshot is not None
        and new.po_digests.keys() >= new.postoffices.keys()
    ):
        new_snap, only = _changed_snapshot(old_snapshot, new, applied)
        changes = diff_snapshots(old_snapshot, new_snap, only)
    else:
        new_snap = snapshot(new)
        changes = diff_snapshots(old_snapshot, new_snap)
    notes: list[str] = []
    routing: tuple[RouteChange, ...] = ()
    if old_snapshot is None:
        notes.append("nothing applied yet: every object is new, so there is no routing diff")
    elif changes and routing_changes:
        try:
            old_config = config_from_snapshot(old_snapshot, old_digest or "")
        except ValueError as exc:
            notes.append(f"routing diff skipped: {exc}")
        else:
            routing = routing_diff(Directory(old_config), new_directory or Directory(new))
    return Plan(
        changes=changes,
        routing=routing,
        first=old_snapshot is None,
        old_digest=old_digest,
        new_digest=new.digest,
        notes=tuple(notes),
        new_snapshot=new_snap,
    )
