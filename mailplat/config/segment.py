"""One postoffice compiled on its own: its share of the Directory and of the checks.

Input: a postoffice's name, validated model and display file name (and which
entries a broken file lost, if any). Output: a frozen Segment holding what
routing and login need from this postoffice alone (mailbox, group, list and
domain entries, the addresses and logins it claims) and what the site-wide
checks need (its claims in the order validate.py makes them, local
diagnostics, redirect and group edges, target addresses, autoresponders).
Nothing here looks at another postoffice or at site.yaml, so a Segment is
cached per file and reused until the file changes: a reload compiles only
the postoffices that changed, and the Directory and the checks merge
Segments instead of walking 100,000 mailboxes again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from mailplat.config.confusable import mixed_scripts, skeleton, unicode_name
from mailplat.config.diagnostics import Diagnostic, PathPart, error, warning
from mailplat.config.models.postoffice import Mailbox, MailingList, Postoffice, Quota
from mailplat.core.address import try_parse

Path_ = tuple[PathPart, ...]


class Kind(StrEnum):
    """What an address resolves to in one step."""

    MAILBOX = "mailbox"
    GROUP = "group"
    LIST = "list"
    REMOTE = "remote"  # not one of our domains
    SMARTHOST = "smarthost"  # our domain, forwarded to its smart host (backup MX)
    ALIAS = "alias"  # abuse/postmaster/catchall pointing at another address
    UNKNOWN = "unknown"  # our domain, no such address
    DISABLED = "disabled"  # our domain or mailbox, refusing mail


@dataclass(frozen=True, slots=True)
class MailboxEntry:
    """A mailbox as routing and login see it."""

    postoffice: str
    name: str
    model: Mailbox
    addresses: tuple[str, ...]
    quota_bytes: int | None

    @property
    def key(self) -> str:
        return f"{self.postoffice}/{self.name}"

    @property
    def primary(self) -> str:
        return self.addresses[0] if self.addresses else f"{self.name}@invalid"


@dataclass(frozen=True, slots=True)
class GroupEntry:
    postoffice: str
    name: str
    address: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListEntry:
    postoffice: str
    name: str
    address: str
    owner: str  # an address
    model: MailingList


@dataclass(frozen=True, slots=True)
class DomainEntry:
    name: str
    postoffice: str
    disabled: bool
    abuse: str | None  # target address
    postmaster: str | None
    catchall: str | None
    smart_host: str | None
    sender_blacklist: frozenset[str]


# An address this postoffice claims, where, and for what (validate.py's wording:
# "mailbox po/name", "group po/name", "list po/name"). Tuples: there are 100,000s.
Claim = tuple[str, "Path_", str]
DomainClaim = str  # a domain this postoffice claims
Target = tuple[str, "Path_", str, str]  # file, path, postoffice, target (a name or an address)
Step = Diagnostic | Claim | DomainClaim


@dataclass(frozen=True, eq=False)
class Segment:
    """A postoffice compiled alone. Compared by identity: one per parsed file."""

    name: str
    file: str
    model: Postoffice
    domains: tuple[DomainEntry, ...]
    mailboxes: tuple[MailboxEntry, ...]
    groups: tuple[GroupEntry, ...]
    lists: tuple[ListEntry, ...]
    # (address, kind, target) in the Directory's order: mailboxes, then groups and lists.
    routes: tuple[tuple[str, Kind, str], ...]
    # (login, mailbox key, bare): addresses, mailbox@postoffice and the bare name
    # (a login only in the default postoffice), per mailbox in that order.
    logins: tuple[tuple[str, str, bool], ...]
    steps: tuple[Step, ...]  # validate.py's walk of this file: claims and local diagnostics
    edges: Mapping[str, tuple[str, ...]]  # address -> addresses it forwards to (no copy kept)
    edge_sources: Mapping[str, tuple[str, Path_]]  # where each edge source is written
    targets: tuple[Target, ...]
    target_domains: frozenset[str]  # domains of the address targets (who refers to whom)
    postmaster_targets: tuple[tuple[str, str], ...]  # (domain, target) with a postmaster:
    autoresponders: frozenset[str]  # mailboxes with an enabled autoresponder
    # Per domain: (domain, confusable skeleton, name as shown, its mixed-script warnings).
    lookalikes: tuple[tuple[str, str, str, tuple[Diagnostic, ...]], ...]
    reserved: tuple[Diagnostic, ...]  # names Windows filesystems reserve
    pruned: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def domain_names(self) -> frozenset[str]:
        return frozenset(self.model.domains)

    def owns_address(self, address: str) -> bool:
        return any(a == address for a, _, _ in self.routes)


def quota_bytes(quota: Quota | None, default: Quota) -> int | None:
    """Quota in bytes, None for unlimited."""
    value = default if quota is None else quota
    return None if value == "unlimited" else int(value) * 1024 * 1024


def target_address(target: str, postoffice: str, mailbox_primary: Mapping[str, str]) -> str:
    """A domain target (`mailbox name` or `address`) as an address."""
    if "@" in target:
        parsed = try_parse(target)
        return parsed.key if parsed else target.lower()
    return mailbox_primary.get(f"{postoffice}/{target}", f"{target}@invalid")


_ASCII_DOT_ATOM = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)


def address_key(address: str) -> str:
    """Address.key of an address the models normalised (EmailAddress fields)."""
    local, at, domain = address.rpartition("@")
    if at and domain.islower() and _ASCII_DOT_ATOM.fullmatch(local):
        return f"{local.lower()}@{domain}"  # what parse_address(...).key gives, without parsing
    parsed = try_parse(address)
    return parsed.key if parsed else address.lower()


def key_and_domain(address: str) -> tuple[str, str] | None:
    """(Address.key, domain) of a normalised address, None when it does not parse."""
    local, at, domain = address.rpartition("@")
    if at and domain.islower() and _ASCII_DOT_ATOM.fullmatch(local):
        return f"{local.lower()}@{domain}", domain
    parsed = try_parse(address)
    return (parsed.key, parsed.domain) if parsed else None


# Device names Windows refuses as file names, with any extension (con.txt too).
_RESERVED = {"con", "prn", "aux", "nul"} | {f"{d}{n}" for d in ("com", "lpt") for n in range(1, 10)}

_RENAME_HINT = {
    "mailbox": "rename it (e.g. {name}-box) and list {name}@ under addresses: to keep the address",
    "group": "rename the group; its address: stays as it is",
    "list": "rename the list (its address is <name>@<domain>, so that changes too)",
}


def compile_postoffice(
    name: str,
    po: Postoffice,
    file: str,
    pruned: Mapping[str, frozenset[str]] | None = None,
) -> Segment:
    """Compile one postoffice; pure, and a function of its arguments only."""
    pruned = pruned or {}
    builder = _Builder(name, po, file, pruned)
    return builder.build()


class _Builder:
    def __init__(
        self, name: str, po: Postoffice, file: str, pruned: Mapping[str, frozenset[str]]
    ) -> None:
        self.name, self.po, self.file, self.pruned = name, po, file, pruned

    def build(self) -> Segment:
        name, po, file = self.name, self.po, self.file
        # -- the Directory's share (directory.py's former _build, per postoffice) --
        # File order, disabled domains last: a mailbox's primary address (where
        # a `catchall: bob` or a welcome goes) must be one that takes mail.
        domains = [d for d, v in po.domains.items() if not v.disabled]
        domains += [d for d, v in po.domains.items() if v.disabled]
        primary: dict[str, str] = {}
        mailboxes: list[MailboxEntry] = []
        routes: list[tuple[str, Kind, str]] = []
        logins: list[tuple[str, str, bool]] = []
        extras: dict[str, list[tuple[int, str]]] = {}  # mailbox -> parsed extra addresses
        for mb_name, mb in po.mailboxes.items():
            low = mb_name.lower()
            addrs = [f"{low}@{d}" for d in domains] if po.auto_address else []
            parsed_extras: list[tuple[int, str]] = []
            for i, extra in enumerate(mb.addresses):
                found = key_and_domain(extra)
                if found is None:
                    continue
                parsed_extras.append((i, found[0]))
                if found[0] not in addrs:
                    addrs.append(found[0])
            extras[mb_name] = parsed_extras
            key = f"{name}/{mb_name}"
            entry = MailboxEntry(
                name, mb_name, mb, tuple(addrs), quota_bytes(mb.quota_mb, po.default_quota_mb)
            )
            mailboxes.append(entry)
            if addrs:
                primary[key] = addrs[0]
            for a in addrs:
                routes.append((a, Kind.MAILBOX, key))
                logins.append((a, key, False))
            logins.append((f"{mb_name}@{name}".lower(), key, False))
            logins.append((low, key, True))
        groups: list[GroupEntry] = []
        lists: list[ListEntry] = []
        for g_name, group in po.groups.items():
            key = address_key(group.address)
            groups.append(
                GroupEntry(name, g_name, key, tuple(address_key(m) for m in group.members))
            )
            routes.append((key, Kind.GROUP, key))
        for l_name, lst in po.lists.items():
            key = f"{l_name.lower()}@{lst.domain}"
            owner = target_address(lst.owner, name, primary)
            lists.append(ListEntry(name, l_name, key, owner, lst))
            routes.append((key, Kind.LIST, key))
        domain_entries = tuple(
            DomainEntry(
                name=dname,
                postoffice=name,
                disabled=dom.disabled,
                abuse=target_address(dom.abuse, name, primary) if dom.abuse else None,
                postmaster=(
                    target_address(dom.postmaster, name, primary) if dom.postmaster else None
                ),
                catchall=target_address(dom.catchall, name, primary) if dom.catchall else None,
                smart_host=dom.smart_host,
                sender_blacklist=frozenset(dom.sender_blacklist),
            )
            for dname, dom in po.domains.items()
        )
        steps, edges, edge_sources, targets = self._checks(extras)
        target_domains = frozenset(t[3].rpartition("@")[2].lower() for t in targets if "@" in t[3])
        return Segment(
            name=name,
            file=file,
            model=po,
            domains=domain_entries,
            mailboxes=tuple(mailboxes),
            groups=tuple(groups),
            lists=tuple(lists),
            routes=tuple(routes),
            logins=tuple(logins),
            steps=tuple(steps),
            edges=edges,
            edge_sources=edge_sources,
            targets=tuple(targets),
            target_domains=target_domains,
            postmaster_targets=tuple(
                (d, dom.postmaster) for d, dom in po.domains.items() if dom.postmaster
            ),
            autoresponders=frozenset(
                n
                for n, mb in po.mailboxes.items()
                if mb.autoresponder is not None and mb.autoresponder.enabled
            ),
            lookalikes=tuple(self._lookalikes()),
            reserved=tuple(self._reserved_names()),
            pruned=self.pruned,
        )

    # -- validate.py's walk of one postoffice, recorded as steps --------------------

    def _checks(
        self, extras: dict[str, list[tuple[int, str]]]
    ) -> tuple[list[Step], dict[str, tuple[str, ...]], dict[str, tuple[str, Path_]], list[Target]]:
        name, po, file = self.name, self.po, self.file
        steps: list[Step] = []
        edges: dict[str, list[str]] = {}
        sources: dict[str, tuple[str, Path_]] = {}
        targets: list[Target] = []
        if not po.domains:
            steps.append(
                error(file, ("domains",), "a postoffice needs at least one domain", "add domains:")
            )
        steps += list(po.domains)
        own = set(po.domains)
        for mb_name, mb in po.mailboxes.items():
            what = f"mailbox {name}/{mb_name}"
            low = mb_name.lower()
            auto = [f"{low}@{d}" for d in po.domains] if po.auto_address else []
            at: Path_ = ("mailboxes", mb_name)
            steps += [(a, at, what) for a in auto]
            for i, key in extras[mb_name]:
                path: Path_ = ("mailboxes", mb_name, "addresses", i)
                domain = key.rpartition("@")[2]
                if domain not in own:
                    steps.append(
                        error(
                            file,
                            path,
                            f"{mb.addresses[i]} uses domain {domain}, which is not a domain of "
                            f"postoffice {name}",
                            f"add {domain} under domains: or use one of: " + ", ".join(sorted(own)),
                        )
                    )
                steps.append((key, path, what))
            if mb.redirect is not None:
                mb_keys = auto + [k for _, k in extras[mb_name]]
                for i, to in enumerate(mb.redirect.to):
                    found = key_and_domain(to)
                    if found is None:
                        continue
                    targets.append(
                        (file, ("mailboxes", mb_name, "redirect", "to", i), name, found[0])
                    )
                    if not mb.redirect.keep_copy:
                        for k in mb_keys:
                            edges.setdefault(k, []).append(found[0])
        group_keys: dict[str, str] = {}
        for g_name, group in po.groups.items():
            found = key_and_domain(group.address)
            if found is None:
                continue
            gkey, gdomain = found
            group_keys[g_name] = gkey
            if gdomain not in own:
                steps.append(
                    error(
                        file,
                        ("groups", g_name, "address"),
                        f"group address {group.address} is not on a domain of postoffice {name}",
                        "use one of: " + ", ".join(sorted(own)),
                    )
                )
            steps.append((gkey, ("groups", g_name, "address"), f"group {name}/{g_name}"))
            for i, m in enumerate(group.members):
                member = key_and_domain(m)
                if member is None:
                    continue
                edges.setdefault(gkey, []).append(member[0])
                targets.append((file, ("groups", g_name, "members", i), name, member[0]))
        # Where a loop is reported: a group's members, else a mailbox's redirect
        # (mailboxes written after groups win, as validate.py always did).
        for g_name, gkey in group_keys.items():
            sources[gkey] = (file, ("groups", g_name, "members"))
        for mb_name, mb in po.mailboxes.items():
            if mb.redirect is not None:
                for d in po.domains:
                    sources[f"{mb_name.lower()}@{d}"] = (file, ("mailboxes", mb_name, "redirect"))
        for l_name, lst in po.lists.items():
            if lst.domain not in own:
                steps.append(
                    error(
                        file,
                        ("lists", l_name, "domain"),
                        f"list domain {lst.domain} is not a domain of postoffice {name}",
                        "use one of: " + ", ".join(sorted(own)),
                    )
                )
            steps.append(
                (f"{l_name.lower()}@{lst.domain}", ("lists", l_name), f"list {name}/{l_name}")
            )
            targets.append((file, ("lists", l_name, "owner"), name, lst.owner))
        for dname, dom in po.domains.items():
            for attr in ("abuse", "postmaster", "catchall"):
                value = getattr(dom, attr)
                if value:
                    targets.append((file, ("domains", dname, attr), name, value))
        has_postmaster = (
            "postmaster" in {m.lower() for m in po.mailboxes}
            or "postmaster" in self.pruned.get("mailboxes", frozenset())
            or all(d.postmaster for d in po.domains.values())
        )
        if po.domains and not has_postmaster:
            steps.append(
                warning(
                    file,
                    ("mailboxes",),
                    f"postoffice {name} has no postmaster mailbox",
                    "RFC 5321 §4.5.1 requires postmaster@ for every domain: add a mailbox "
                    "named postmaster or a postmaster: target on each domain",
                    code="no-postmaster",
                )
            )
        return steps, {k: tuple(v) for k, v in edges.items()}, sources, targets

    def _lookalikes(self) -> list[tuple[str, str, str, tuple[Diagnostic, ...]]]:
        out: list[tuple[str, str, str, tuple[Diagnostic, ...]]] = []
        for dname in self.po.domains:
            shown = unicode_name(dname)
            label_of = f"{shown} ({dname})" if shown != dname else dname
            mixed: list[Diagnostic] = []
            for label in shown.split("."):
                scripts = mixed_scripts(label)
                if scripts:
                    mixed.append(
                        warning(
                            self.file,
                            ("domains", dname),
                            f"domain {label_of} mixes {' and '.join(s.title() for s in scripts)} "
                            f"letters in {label!r}: it can pass for another name",
                            "write each label in one script; if the name is meant so, "
                            "this warning can be ignored",
                            code="mixed-script",
                        )
                    )
            out.append((dname, skeleton(dname), label_of, tuple(mixed)))
        return out

    def _reserved_names(self) -> list[Diagnostic]:
        out: list[Diagnostic] = []
        po = self.po
        named = [
            *(("mailbox", "mailboxes", n) for n in po.mailboxes),
            *(("group", "groups", n) for n in po.groups),
            *(("list", "lists", n) for n in po.lists),
        ]
        for what, coll, name in named:
            if name.split(".", 1)[0].lower() in _RESERVED:
                out.append(
                    warning(
                        self.file,
                        (coll, name),
                        f"{what} name {name!r} is reserved on Windows filesystems "
                        "(CON, PRN, AUX, NUL, COM1-9, LPT1-9, with any extension): its folder "
                        "cannot be copied to, backed up on or served from one",
                        _RENAME_HINT[what].format(name=name),
                        code="reserved-name",
                    )
                )
        return out
