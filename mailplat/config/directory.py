"""The compiled Directory: an immutable index answering "where does this address go?"
and "which mailbox is this login?".

Input: a validated SiteConfig. Output: a Directory whose tables are plain
dicts never mutated after construction. A reload builds a new Directory and
swaps one reference; a session keeps the snapshot it started with.
`resolve` takes one step (address -> target); config.expand follows groups
and redirects to final destinations.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mailplat.config.load import SiteConfig
from mailplat.config.models.postoffice import Mailbox, MailingList, Quota
from mailplat.config.models.site import Site
from mailplat.core.address import Address, try_parse


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


@dataclass(frozen=True, slots=True)
class Step:
    """One resolution step: the kind, the target key or address, and why."""

    kind: Kind
    target: str
    reason: str
    catchall: bool = False


def quota_bytes(quota: Quota | None, default: Quota) -> int | None:
    """Quota in bytes, None for unlimited."""
    value = default if quota is None else quota
    return None if value == "unlimited" else int(value) * 1024 * 1024


def target_address(target: str, postoffice: str, mailbox_primary: dict[str, str]) -> str:
    """A domain target (`mailbox name` or `address`) as an address."""
    if "@" in target:
        parsed = try_parse(target)
        return parsed.key if parsed else target.lower()
    return mailbox_primary.get(f"{postoffice}/{target}", f"{target}@invalid")


class Directory:
    """Immutable routing and login index built from a SiteConfig."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.site: Site = config.site
        self.digest = config.digest
        self.domains: dict[str, DomainEntry] = {}
        self.mailboxes: dict[str, MailboxEntry] = {}
        self.groups: dict[str, GroupEntry] = {}
        self.lists: dict[str, ListEntry] = {}
        self.addresses: dict[str, tuple[Kind, str]] = {}
        self.logins: dict[str, str] = {}
        self._build()

    def _build(self) -> None:
        primary: dict[str, str] = {}
        for po_name, po in self.config.postoffices.items():
            # File order, disabled domains last: a mailbox's primary address (where
            # a `catchall: bob` or a welcome goes) must be one that takes mail.
            domains = [d for d, v in po.domains.items() if not v.disabled]
            domains += [d for d, v in po.domains.items() if v.disabled]
            for mb_name, mb in po.mailboxes.items():
                addrs: list[str] = []
                if po.auto_address:
                    addrs += [f"{mb_name.lower()}@{d}" for d in domains]
                for extra in mb.addresses:
                    parsed = try_parse(extra)
                    if parsed and parsed.key not in addrs:
                        addrs.append(parsed.key)
                entry = MailboxEntry(
                    po_name,
                    mb_name,
                    mb,
                    tuple(addrs),
                    quota_bytes(mb.quota_mb, po.default_quota_mb),
                )
                self.mailboxes[entry.key] = entry
                if addrs:
                    primary[entry.key] = addrs[0]
                for a in addrs:
                    self.addresses.setdefault(a, (Kind.MAILBOX, entry.key))
                    self.logins.setdefault(a, entry.key)
                self.logins.setdefault(f"{mb_name}@{po_name}".lower(), entry.key)
                if po_name == self.site.server.default_postoffice:
                    self.logins.setdefault(mb_name.lower(), entry.key)
        for po_name, po in self.config.postoffices.items():
            for name, group in po.groups.items():
                key = _key(group.address)
                self.groups[key] = GroupEntry(
                    po_name, name, key, tuple(_key(m) for m in group.members)
                )
                self.addresses.setdefault(key, (Kind.GROUP, key))
            for name, lst in po.lists.items():
                key = f"{name.lower()}@{lst.domain}"
                owner = target_address(lst.owner, po_name, primary)
                self.lists[key] = ListEntry(po_name, name, key, owner, lst)
                self.addresses.setdefault(key, (Kind.LIST, key))
            for dname, dom in po.domains.items():
                self.domains[dname] = DomainEntry(
                    name=dname,
                    postoffice=po_name,
                    disabled=dom.disabled,
                    abuse=target_address(dom.abuse, po_name, primary) if dom.abuse else None,
                    postmaster=(
                        target_address(dom.postmaster, po_name, primary) if dom.postmaster else None
                    ),
                    catchall=(
                        target_address(dom.catchall, po_name, primary) if dom.catchall else None
                    ),
                    smart_host=dom.smart_host,
                    sender_blacklist=frozenset(dom.sender_blacklist),
                )

    # -- queries -------------------------------------------------------------

    def is_local_domain(self, domain: str) -> bool:
        """True for one of our domains, or a literal of our own IPs when literals are on."""
        if domain in self.domains:
            return True
        if domain.startswith("[") and self.site.security.domain_literals.enabled:
            return domain[1:-1].removeprefix("IPv6:").lower() in self.literal_ips()
        return False

    def literal_ips(self) -> set[str]:
        ips = {ip.lower() for ip in self.site.security.domain_literals.extra_ips}
        for listener in (self.site.listeners.smtp, self.site.listeners.submission):
            for bind in listener.bind:
                host = bind.rsplit(":", 1)[0].strip("[]")
                ips.add(host.lower())
        return ips

    def domain_of(self, address: Address) -> DomainEntry | None:
        return self.domains.get(address.domain)

    def resolve(self, address: Address) -> Step:
        """One step of routing for a parsed address."""
        key = address.key
        if address.is_literal and self.is_local_domain(address.domain):
            # user@[our ip]: look the local part up in the default postoffice's first domain.
            return self._resolve_literal(address)
        dom = self.domains.get(address.domain)
        if dom is None:
            return Step(Kind.REMOTE, key, f"{address.domain} is not a local domain")
        if dom.disabled:
            return Step(Kind.DISABLED, key, f"domain {dom.name} is disabled")
        if dom.smart_host:
            return Step(Kind.SMARTHOST, key, f"domain {dom.name} is forwarded to {dom.smart_host}")
        found = self.addresses.get(key)
        if found is not None:
            kind, target = found
            if kind is Kind.MAILBOX and self.mailboxes[target].model.disabled:
                return Step(Kind.DISABLED, target, f"mailbox {target} is disabled")
            return Step(kind, target, f"{key} is {kind.value} {target}")
        local = address.local.lower()
        if local == "abuse" and dom.abuse:
            return Step(Kind.ALIAS, dom.abuse, f"abuse@ of {dom.name} goes to {dom.abuse}")
        if local == "postmaster" and dom.postmaster:
            return Step(
                Kind.ALIAS, dom.postmaster, f"postmaster@ of {dom.name} goes to {dom.postmaster}"
            )
        if dom.catchall and not self.site.security.disable_catchalls:
            return Step(
                Kind.ALIAS,
                dom.catchall,
                f"no such address; catchall of {dom.name} goes to {dom.catchall}",
                catchall=True,
            )
        return Step(Kind.UNKNOWN, key, f"no address {key} in domain {dom.name}")

    def _resolve_literal(self, address: Address) -> Step:
        po_name = self.site.server.default_postoffice
        po = self.config.postoffices.get(po_name or "")
        if po is None or not po.domains:
            return Step(Kind.UNKNOWN, address.key, "no default postoffice for address literals")
        first = next(iter(po.domains))
        return Step(
            Kind.ALIAS,
            f"{address.local.lower()}@{first}",
            f"address literal maps to the default postoffice domain {first}",
        )

    def mailbox_for_login(self, login: str) -> MailboxEntry | None:
        """The mailbox a login names: mailbox@postoffice, any of its addresses, or a bare name."""
        text = login.strip().lower()
        key = self.logins.get(text)
        if key is None and "@" in text:
            parsed = try_parse(text)
            if parsed:
                key = self.logins.get(parsed.key)
        return self.mailboxes.get(key) if key else None

    def owns_address(self, mailbox: MailboxEntry, address: Address) -> bool:
        """True when `address` routes to this mailbox (for the sender-must-match rule)."""
        return address.key in mailbox.addresses


def _key(address: str) -> str:
    parsed = try_parse(address)
    return parsed.key if parsed else address.lower()
