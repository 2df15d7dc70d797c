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
from dataclasses import dataclass
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
Claim = tuple[str | tuple[str, ...], "Path_", str]
DomainClaim = str  # a domain this postoffice claims
Target = tuple[str, "Path_", str, str]  # file, path, postoffice, target (a name or an address)
Step = Diagnostic | Claim | DomainClaim


@dataclass(frozen=True, slots=True)
class Entries:
    """A postoffice's share of the Directory."""

    domains: tuple[DomainEntry, ...]
    mailboxes: tuple[MailboxEntry, ...]
    groups: tuple[GroupEntry, ...]
    lists: tuple[ListEntry, ...]


@dataclass(frozen=True, slots=True)
class Checks:
    """A postoffice's share of the site-wide checks."""

    # validate.py's walk of this file: domain claims, address claims (one step
    # holds a mailbox's automatic addresses) and local diagnostics, in order.
    steps: tuple[Step, ...]
    edges: Mapping[str, tuple[str, ...]]  # address -> addresses it forwards to
    edge_sources: Mapping[str, tuple[str, Path_]]  # where each edge source is written
    targets: tuple[Target, ...]
    target_domains: frozenset[str]  # domains of the address targets (who refers to whom)
    postmaster_targets: tuple[tuple[str, str], ...]  # (domain, target) with a postmaster:
    autoresponders: frozenset[str]  # mailboxes with an enabled autoresponder
    # Per domain: (domain, confusable skeleton, name as shown, its mixed-script warnings).
    lookalikes: tuple[tuple[str, str, str, tuple[Diagnostic, ...]], ...]
    reserved: tuple[Diagnostic, ...]  # names Windows filesystems reserve


class Segment:
    """A postoffice compiled alone. Compared by identity: one per parsed file.

    Its two shares are computed on first use: `validate` needs only the
    checks, a Directory only the entries, a running server both.
    """

    __slots__ = ("_checks", "_entries", "file", "model", "name", "pruned")

    def __init__(
        self,
        name: str,
        model: Postoffice,
        file: str,
        pruned: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.name, self.model, self.file = name, model, file
        self.pruned: Mapping[str, frozenset[str]] = pruned or {}
        self._entries: Entries | None = None
        self._checks: Checks | None = None

    @property
    def entries(self) -> Entries:
        if self._entries is None:
            self._entries = _entries(self.name, self.model)
        return self._entries

    @property
    def checks(self) -> Checks:
        if self._checks is None:
            self._checks = _Checker(self.name, self.model, self.file, self.pruned).build()
        return self._checks

    # The parts as attributes, for readers of either share.
    @property
    def domains(self) -> tuple[DomainEntry, ...]:
        return self.entries.domains

    @property
    def mailboxes(self) -> tuple[MailboxEntry, ...]:
        return self.entries.mailboxes

    @property
    def groups(self) -> tuple[GroupEntry, ...]:
        return self.entries.groups

    @property
    def lists(self) -> tuple[ListEntry, ...]:
        return self.entries.lists

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.checks.steps

    @property
    def edges(self) -> Mapping[str, tuple[str, ...]]:
        return self.checks.edges

    @property
    def edge_sources(self) -> Mapping[str, tuple[str, Path_]]:
        return self.checks.edge_sources

    @property
    def targets(self) -> tuple[Target, ...]:
        return self.checks.targets

    @property
    def target_domains(self) -> frozenset[str]:
        return self.checks.target_domains

    @property
    def postmaster_targets(self) -> tuple[tuple[str, str], ...]:
        return self.checks.postmaster_targets

    @property
    def autoresponders(self) -> frozenset[str]:
        return self.checks.autoresponders

    @property
    def lookalikes(self) -> tuple[tuple[str, str, str, tuple[Diagnostic, ...]], ...]:
        return self.checks.lookalikes

    @property
    def reserved(self) -> tuple[Diagnostic, ...]:
        return self.checks.reserved

    @property
    def domain_names(self) -> frozenset[str]:
        return frozenset(self.model.domains)


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

# Any name that could be one of them (the exact test follows): a line
# starting with con, prn, aux, nul, com or lpt, in any case.
_MAYBE_RESERVED = re.compile(r"^(?:con|prn|aux|nul|com|lpt)", re.IGNORECASE | re.MULTILINE)

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
    return Segment(name, po, file, pruned)


def _entries(name: str, po: Postoffice) -> Entries:
    """The Directory's share (what directory.py's _build did per postoffice)."""
    # File order, disabled domains last: a mailbox's primary address (where
    # a `catchall: bob` or a welcome goes) must be one that takes mail.
    domains = [d for d, v in po.domains.items() if not v.disabled]
    domains += [d for d, v in po.domains.items() if v.disabled]
    auto_on = po.auto_address
    default_quota = po.default_quota_mb
    primary: dict[str, str] = {}
    mailboxes: list[MailboxEntry] = []
    for mb_name, mb in po.mailboxes.items():
        low = mb_name.lower()
        addrs = [f"{low}@{d}" for d in domains] if auto_on else []
        for extra in mb.addresses:
            found = key_and_domain(extra)
            if found is not None and found[0] not in addrs:
                addrs.append(found[0])
        entry = MailboxEntry(
            name, mb_name, mb, tuple(addrs), quota_bytes(mb.quota_mb, default_quota)
        )
        mailboxes.append(entry)
        if addrs:
            primary[f"{name}/{mb_name}"] = addrs[0]
    groups = tuple(
        GroupEntry(
            name,
            g_name,
            address_key(group.address),
            tuple(address_key(m) for m in group.members),
        )
        for g_name, group in po.groups.items()
    )
    lists = tuple(
        ListEntry(
            name,
            l_name,
            f"{l_name.lower()}@{lst.domain}",
            target_address(lst.owner, name, primary),
            lst,
        )
        for l_name, lst in po.lists.items()
    )
    domain_entries = tuple(
        DomainEntry(
            name=dname,
            postoffice=name,
            disabled=dom.disabled,
            abuse=target_address(dom.abuse, name, primary) if dom.abuse else None,
            postmaster=(target_address(dom.postmaster, name, primary) if dom.postmaster else None),
            catchall=target_address(dom.catchall, name, primary) if dom.catchall else None,
            smart_host=dom.smart_host,
            sender_blacklist=frozenset(dom.sender_blacklist),
        )
        for dname, dom in po.domains.items()
    )
    return Entries(domain_entries, tuple(mailboxes), groups, lists)


class _Checker:
    def __init__(
        self, name: str, po: Postoffice, file: str, pruned: Mapping[str, frozenset[str]]
    ) -> None:
        self.name, self.po, self.file, self.pruned = name, po, file, pruned

    def build(self) -> Checks:
        name, po, file = self.name, self.po, self.file
        written = list(po.domains)
        own = set(written)
        auto_on = po.auto_address
        steps: list[Step] = []
        edges: dict[str, list[str]] = {}
        targets: list[Target] = []
        if not po.domains:
            steps.append(
                error(file, ("domains",), "a postoffice needs at least one domain", "add domains:")
            )
        steps += written  # domain claims
        for mb_name, mb in po.mailboxes.items():
            what = f"mailbox {name}/{mb_name}"
            low = mb_name.lower()
            # validate.py claims the automatic addresses in the file's domain order.
            auto = tuple([f"{low}@{d}" for d in written]) if auto_on else ()
            steps.append((auto, ("mailboxes", mb_name), what))
            extras: list[str] = []
            for i, extra in enumerate(mb.addresses):
                found = key_and_domain(extra)
                if found is None:
                    continue
                ekey, edomain = found
                extras.append(ekey)
                path: Path_ = ("mailboxes", mb_name, "addresses", i)
                if edomain not in own:
                    steps.append(
                        error(
                            file,
                            path,
                            f"{extra} uses domain {edomain}, which is not a domain of "
                            f"postoffice {name}",
                            f"add {edomain} under domains: or use one of: "
                            + ", ".join(sorted(own)),
                        )
                    )
                steps.append((ekey, path, what))
            if mb.redirect is not None:
                mb_keys = [*auto, *extras]
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
        sources: dict[str, tuple[str, Path_]] = {}
        for g_name, group in po.groups.items():
            found = key_and_domain(group.address)
            if found is None:
                continue
            gkey = found[0]
            if found[1] not in own:
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
            # Where a loop is reported: a group's members, else a mailbox's redirect.
            sources[gkey] = (file, ("groups", g_name, "members"))
        for mb_name, mb in po.mailboxes.items():
            if mb.redirect is not None:
                for d in written:
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
        return Checks(
            steps=tuple(steps),
            edges={k: tuple(v) for k, v in edges.items()},
            edge_sources=sources,
            targets=tuple(targets),
            target_domains=frozenset(
                t[3].rpartition("@")[2].lower() for t in targets if "@" in t[3]
            ),
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
        )

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
        # One scan of all names first: nearly every postoffice has none.
        if not _MAYBE_RESERVED.search("\n".join((*po.mailboxes, *po.groups, *po.lists))):
            return out
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
