"""Cross-object rules of a site, checked after every file has the right shape.

Input: a SiteConfig whose files each validated, its postoffices compiled
one by one (config.segment: each file's claims, targets and edges, computed
once per file). Output: every Diagnostic found (errors and warnings), each
with a file and a path into it; the loader turns paths into line:col.
`validate_site` checks a whole site; `check_change` checks a change to a
site that was valid, running only the rules the change can break (see its
docstring). Rules:
- every postoffice has a domain; a domain belongs to exactly one postoffice;
- an address belongs to exactly one target site-wide (mailbox addresses,
  group addresses and list addresses share one namespace);
- mailbox, group and list addresses use a domain of their own postoffice;
- abuse/postmaster/catchall/owner targets name a mailbox or a valid address,
  and local target addresses exist;
- no group or redirect loops;
- no autoresponder on a mailbox that receives postmaster mail (named
  postmaster, or a domain's postmaster: target), as the seed product forbids:
  answering bounces and abuse reports automatically makes loops and backscatter;
- default_postoffice exists; listeners do not collide; TLS listeners have certs;
- no smart host (global or a domain's) points back at one of our own SMTP
  listeners, which would loop every remote message through us forever;
- warnings: no postmaster, local-sender relaying, open privileged ranges,
  look-alike domains (mixed scripts in a label, or two domains with the same
  confusable skeleton), and object names Windows filesystems reserve.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from mailplat.config.confusable import unicode_name
from mailplat.config.diagnostics import Diagnostic, PathPart, error, warning
from mailplat.config.load import Gaps, SiteConfig
from mailplat.config.models.base import split_host_port
from mailplat.config.models.site import Site
from mailplat.config.segment import Kind, Segment, Target, key_and_domain
from mailplat.core.address import try_parse
from mailplat.core.netmatch import is_open_range

if TYPE_CHECKING:
    from mailplat.config.directory import Directory

Owner = tuple[str, tuple[PathPart, ...], str]  # file, path, description


def validate_site(config: SiteConfig, gaps: Gaps | None = None) -> list[Diagnostic]:
    """Every cross-object problem of a site.

    `gaps` names what did not parse (a broken site.yaml, postoffice files,
    entries dropped from a file); rules that would need those stay silent.
    """
    from mailplat.config.directory import segments_of

    gaps = gaps or Gaps()
    segments = segments_of(config)
    diags: list[Diagnostic] = []
    diags += _check_site(config, gaps)
    if gaps.site_ok(("listeners",), ("server", "host_name"), ("delivery", "smart_host")):
        diags += _check_smart_hosts(config)
    owners, edges, targets = _collect(config, segments, diags, gaps)
    domain_po: dict[str, str] = {}
    for seg in segments.values():
        for d in seg.model.domains:
            domain_po.setdefault(d, seg.name)
    diags += _check_targets(config, owners, targets, gaps, domain_po)
    where: dict[str, tuple[str, tuple[PathPart, ...]]] = {}
    for seg in segments.values():
        where.update(seg.edge_sources)
    diags += _check_loops(config.site_file, lambda a: edges.get(a, ()), list(edges), where.get)

    def mailbox_of(address: str) -> tuple[str, str] | None:
        owner = owners.get(address)
        return _mailbox_of(owner) if owner else None

    diags += _check_postmaster_autoreply(config, segments.values(), mailbox_of)
    diags += _check_lookalike_domains(segments.values())
    for seg in segments.values():
        diags += seg.reserved
    return diags


def _check_site(config: SiteConfig, gaps: Gaps) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    f = config.site_file
    site = config.site
    default = site.server.default_postoffice
    if (
        default
        and gaps.site_ok(("server", "default_postoffice"))
        and default not in config.postoffices
        and default not in gaps.postoffices
    ):
        out.append(
            error(
                f,
                ("server", "default_postoffice"),
                f"default_postoffice {default!r} does not exist",
                f"create postoffices/{default}.yaml or name one of: "
                + ", ".join(sorted(config.postoffices)),
            )
        )
    if gaps.site:
        return out  # site.yaml did not parse at all
    if site.relay.allow_local_senders:
        out.append(
            warning(
                f,
                ("relay", "allow_local_senders"),
                "allow_local_senders lets anyone who forges a local From address relay mail",
                "prefer allow_authenticated or privileged_ips",
                code="local-senders-relay",
            )
        )
    for i, pattern in enumerate(site.relay.privileged_ips):
        if is_open_range(pattern):
            out.append(
                warning(
                    f,
                    ("relay", "privileged_ips", i),
                    f"{pattern} matches every client: this server is an open relay",
                    "list only your own networks",
                    code="open-relay",
                )
            )
    seen: dict[str, str] = {}
    if not gaps.site_ok(("listeners",)):
        return out
    for lname in ("smtp", "submission", "smtps", "pop3", "pop3s"):
        listener = getattr(site.listeners, lname)
        if not listener.enabled:
            continue
        if lname in ("smtps", "pop3s", "submission") and listener.tls is None:
            out.append(
                error(
                    f,
                    ("listeners", lname),
                    f"listener {lname} needs a tls: certificate",
                    "add tls: {cert: ..., key: ...} (mailplat tls self-signed makes one) "
                    "or set enabled: false",
                )
            )
        for j, bind in enumerate(listener.bind):
            if bind.endswith(":0"):
                continue  # port 0: the system picks a free port each time
            if bind in seen:
                out.append(
                    error(
                        f,
                        ("listeners", lname, "bind", j),
                        f"{bind} is already used by listener {seen[bind]}",
                        "give each listener its own port",
                    )
                )
            seen[bind] = lname
    return out


SMTP_DEFAULT_PORTS = {"smtp": 25, "submission": 587, "smtps": 465}
SMART_HOST_PORT = 25
_WILDCARD = {"0.0.0.0", "::", "", "*"}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _own_listener(site: Site, spec: str) -> str | None:
    """The listener (`kind host:port`) a smart host `host[:port]` would reach, if it is ours."""
    try:
        host, port = split_host_port(spec, SMART_HOST_PORT)
    except ValueError:
        return None
    host = host.lower()
    names = {site.server.host_name.lower()}
    for kind, default in SMTP_DEFAULT_PORTS.items():
        listener = getattr(site.listeners, kind)
        if not listener.enabled:
            continue
        for bind in listener.bind:
            bhost, bport = split_host_port(bind, default)
            bhost = bhost.lower()
            ports = {bport, listener.alternate_port} - {None, 0}
            if port not in ports:
                continue
            same = (
                host == bhost
                or host in names  # our own name with our own port
                or (bhost in _WILDCARD and _loopback(host))
                or (_loopback(bhost) and _loopback(host) and "localhost" in (host, bhost))
            )
            if same:
                return f"{kind} {bind}"
    return None


def _check_smart_hosts(config: SiteConfig) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    site = config.site
    hint = "point it at another server (host[:port]), or remove it"
    smart = site.delivery.smart_host
    if smart is not None:
        ours = _own_listener(site, smart.host)
        if ours:
            out.append(
                error(
                    config.site_file,
                    ("delivery", "smart_host", "host"),
                    f"smart host {smart.host} is this server's own listener ({ours}): "
                    "every remote message would loop back to us",
                    hint,
                )
            )
    for po_name, po in config.postoffices.items():
        for dname, dom in po.domains.items():
            if not dom.smart_host:
                continue
            ours = _own_listener(site, dom.smart_host)
            if ours:
                out.append(_smart_host_loop(config.files[po_name], dname, dom.smart_host, ours))
    return out


def _collect(
    config: SiteConfig, segments: dict[str, Segment], diags: list[Diagnostic], gaps: Gaps
) -> tuple[dict[str, Owner], dict[str, list[str]], list[Target]]:
    """Build the site-wide address table; record ownership clashes and foreign domains.

    Replays each Segment's steps (its claims and local diagnostics, in the
    order the file is written), so the output order is that of one walk.
    """
    owners: dict[str, Owner] = {}
    domain_owner: dict[str, tuple[str, str]] = {}
    edges: dict[str, list[str]] = {}
    targets: list[Target] = []
    for po_name, seg in segments.items():
        file = seg.file
        for step in seg.steps:
            if type(step) is tuple:
                first, at, what = step
                for address in first if isinstance(first, tuple) else (first,):
                    if address in owners:
                        ofile, _, owhat = owners[address]
                        diags.append(_owned_twice(file, address, at, ofile, owhat))
                    else:
                        owners[address] = (file, at, what)
            elif type(step) is str:
                dname = step
                if dname in domain_owner:
                    other, ofile = domain_owner[dname]
                    diags.append(
                        error(
                            file,
                            ("domains", dname),
                            f"domain {dname} already belongs to postoffice {other} ({ofile})",
                            "a domain belongs to exactly one postoffice",
                        )
                    )
                else:
                    domain_owner[dname] = (po_name, file)
            else:
                assert isinstance(step, Diagnostic)
                diags.append(step)
        for source, sinks in seg.edges.items():
            edges.setdefault(source, []).extend(sinks)
        targets += seg.targets
    return owners, edges, targets


def _owned_twice(
    file: str, address: str, at: tuple[PathPart, ...], ofile: str, owhat: str
) -> Diagnostic:
    return error(
        file,
        at,
        f"address {address} already belongs to {owhat} ({ofile})",
        "an address can go to one target only; use a group to reach several",
    )


def _check_targets(
    config: SiteConfig,
    owners: Mapping[str, object],
    targets: list[Target],
    gaps: Gaps,
    domain_po: Mapping[str, str],
) -> list[Diagnostic]:
    """Targets must exist: a mailbox name of the postoffice, or an address someone has.

    `domain_po`: each local domain and the (first) postoffice that has it.
    """
    out: list[Diagnostic] = []
    for file, path, po_name, target in targets:
        if "@" not in target:
            if target not in config.postoffices[po_name].mailboxes and not gaps.removed(
                po_name, "mailboxes", target
            ):
                out.append(
                    error(
                        file,
                        path,
                        f"no mailbox {target!r} in postoffice {po_name}",
                        "name an existing mailbox or write a full address",
                    )
                )
            continue
        found = key_and_domain(target)
        if found is None:
            out.append(error(file, path, f"{target!r} is not a valid address"))
            continue
        key, domain = found
        owner_po = domain_po.get(domain)
        if owner_po is not None and key not in owners:
            if gaps.incomplete(owner_po):
                continue  # the owner may be an entry that failed to parse
            parsed = try_parse(target)
            assert parsed is not None
            local = parsed.local.lower()
            dom = config.postoffices[owner_po].domains[domain]
            aliased = (local == "abuse" and dom.abuse) or (local == "postmaster" and dom.postmaster)
            # A catchall only rescues a target that is not the catchall itself
            # (catchall: ghost@same.domain would route to itself forever).
            self_catchall = path[-1] == "catchall" and path[-2] == domain
            via_catchall = bool(dom.catchall) and not self_catchall
            if not aliased and not via_catchall and not dom.smart_host:
                out.append(
                    error(
                        file,
                        path,
                        f"{key} is on a local domain but no mailbox, group or list has it",
                        "create it or correct the address",
                    )
                )
    return out


def _check_postmaster_autoreply(
    config: SiteConfig,
    segments: Iterable[Segment],
    mailbox_of: Callable[[str], tuple[str, str] | None],
) -> list[Diagnostic]:
    """No autoresponder on a mailbox that receives postmaster mail.

    `mailbox_of` maps an address to the (postoffice, mailbox) owning it, if any.
    """
    out: list[Diagnostic] = []
    flagged: set[tuple[str, str]] = set()

    def flag(po_name: str, mb_name: str, why: str) -> None:
        po = config.postoffices.get(po_name)
        mb = po.mailboxes.get(mb_name) if po else None
        if mb is None or mb.autoresponder is None or not mb.autoresponder.enabled:
            return
        if (po_name, mb_name) in flagged:
            return
        flagged.add((po_name, mb_name))
        out.append(
            error(
                config.files[po_name],
                ("mailboxes", mb_name, "autoresponder"),
                f"mailbox {po_name}/{mb_name} receives postmaster mail ({why}), so it must not "
                "have an autoresponder",
                "automatic replies to bounces and reports loop and hit innocent senders: "
                "remove the autoresponder (or set enabled: false), or point postmaster: at "
                "another mailbox",
            )
        )

    for seg in segments:
        po_name = seg.name
        for mb_name in seg.autoresponders:
            if mb_name.lower() == "postmaster":
                flag(po_name, mb_name, "it is named postmaster")
        for dname, target in seg.postmaster_targets:
            why = f"postmaster: of domain {dname}"
            if "@" not in target:
                flag(po_name, target, why)
                continue
            parsed = try_parse(target)
            mailbox = mailbox_of(parsed.key) if parsed else None
            if mailbox:
                flag(*mailbox, why)
    return out


def _check_lookalike_domains(segments: Iterable[Segment]) -> list[Diagnostic]:
    """Warn about domains a reader can mistake for another (homographs)."""
    out: list[Diagnostic] = []
    seen: dict[str, tuple[str, str]] = {}  # skeleton -> (domain, postoffice)
    for seg in segments:
        for dname, key, label_of, mixed in seg.lookalikes:
            out += mixed
            other = seen.get(key)
            if other is None:
                seen[key] = (dname, seg.name)
            elif other[0] != dname:
                out.append(
                    warning(
                        seg.file,
                        ("domains", dname),
                        f"domain {label_of} looks like domain {unicode_name(other[0])} "
                        f"(postoffice {other[1]}): readers cannot tell them apart",
                        "check that both are meant; a look-alike domain is a phishing tool",
                        code="confusable-domain",
                    )
                )
    return out


def _mailbox_of(owner: Owner) -> tuple[str, str] | None:
    """(postoffice, mailbox) of an address owned by a mailbox (see claim() in _collect)."""
    kind, _, name = owner[2].partition(" ")
    po_name, _, mb_name = name.partition("/")
    return (po_name, mb_name) if kind == "mailbox" and mb_name else None


Where = Callable[[str], tuple[str, tuple[PathPart, ...]] | None]


def _check_loops(
    site_file: str,
    edges: Callable[[str], Sequence[str]],
    starts: Iterable[str],
    where: Where,
) -> list[Diagnostic]:
    """Report each cycle in the group/redirect graph reachable from `starts` once."""
    out: list[Diagnostic] = []
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    reported: set[frozenset[str]] = set()

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges(node):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    file, path = where(cycle[0]) or (site_file, ())
                    out.append(
                        error(
                            file,
                            path,
                            "loop: " + " -> ".join([*cycle, nxt]),
                            "break the loop: one of these must deliver to a mailbox "
                            "(or keep_copy: true)",
                        )
                    )
            elif state.get(nxt) is None:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in starts:
        if node not in state:
            visit(node, [])
    return out


# -- a change to a running, valid site ---------------------------------------------------


def check_change(base: Directory, new: Directory) -> list[Diagnostic]:
    """Every diagnostic a change can cause, when `base` (the site being served) had no error.

    `new` must be derived from base (Directory(config, base=base) with
    .derived true): then no key is claimed twice, and any error of the new
    site involves a changed postoffice. The rules run over the changed
    postoffices and those whose targets name their domains; site.yaml rules
    run when it changed. Warnings that compare postoffices (look-alike
    domains) are left to `validate`.
    """
    config = new.config
    old_segs, segs = base.segments, new.segments
    changed = [name for name, seg in segs.items() if old_segs.get(name) is not seg]
    removed = [name for name in old_segs if name not in segs]
    site_changed = base.site is not new.site
    out: list[Diagnostic] = []
    gaps = Gaps()
    out += _check_site(config, gaps)
    if site_changed:
        out += _check_smart_hosts(config)
    else:
        out += _check_domain_smart_hosts(config, [segs[n] for n in changed])
    # Claims inside a changed postoffice (across postoffices they cannot clash:
    # the derived Directory would have found it and built anew).
    for name in changed:
        seg = segs[name]
        mine: dict[str, str] = {}
        for step in seg.steps:
            if type(step) is tuple:
                first, at, what = step
                for address in first if isinstance(first, tuple) else (first,):
                    if address in mine:
                        out.append(_owned_twice(seg.file, address, at, seg.file, mine[address]))
                    else:
                        mine[address] = what
            elif isinstance(step, Diagnostic):
                out.append(step)
        out += seg.reserved
        for *_, mixed in seg.lookalikes:
            out += mixed
    # Whose targets can the change break: the changed postoffices, and every
    # postoffice naming an address on a domain they had or have.
    domains: set[str] = set()
    for name in (*changed, *removed):
        for either in (old_segs.get(name), segs.get(name)):
            if either is not None:
                domains |= either.domain_names
    recheck = set(changed)
    for d in domains:
        recheck |= new.referrers.get(d, frozenset())
    ordered = [segs[n] for n in config.postoffices if n in recheck and n in segs]
    targets = [t for seg in ordered for t in seg.targets]
    domain_po = {d: e.postoffice for d, e in new.domains.items()}
    out += _check_targets(config, new.addresses, targets, gaps, domain_po)
    starts = [source for n in changed for source in segs[n].edges]
    out += _check_loops(config.site_file, lambda a: new.edges.get(a, ()), starts, _where_in(new))
    out += _check_postmaster_autoreply(config, ordered, _mailbox_in(new))
    return out


def _mailbox_in(directory: Directory) -> Callable[[str], tuple[str, str] | None]:
    def mailbox_of(address: str) -> tuple[str, str] | None:
        found = directory.addresses.get(address)
        if found is None or found[0] is not Kind.MAILBOX:
            return None
        po, _, mb = found[1].partition("/")
        return po, mb

    return mailbox_of


def _where_in(directory: Directory) -> Where:
    def where(address: str) -> tuple[str, tuple[PathPart, ...]] | None:
        found = directory.addresses.get(address)
        if found is None:
            return None
        kind, target = found
        if kind is Kind.MAILBOX:
            po = target.partition("/")[0]
        elif kind is Kind.GROUP:
            po = directory.groups[target].postoffice
        else:
            po = directory.lists[target].postoffice
        seg = directory.segments.get(po)
        return seg.edge_sources.get(address) if seg else None

    return where


def _check_domain_smart_hosts(config: SiteConfig, segments: list[Segment]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for seg in segments:
        for dname, dom in seg.model.domains.items():
            if not dom.smart_host:
                continue
            ours = _own_listener(config.site, dom.smart_host)
            if ours:
                out.append(_smart_host_loop(seg.file, dname, dom.smart_host, ours))
    return out


def _smart_host_loop(file: str, dname: str, smart_host: str, ours: str) -> Diagnostic:
    return error(
        file,
        ("domains", dname, "smart_host"),
        f"smart host {smart_host} of domain {dname} is this server's own "
        f"listener ({ours}): its mail would loop back to us",
        "point it at another server (host[:port]), or remove it",
    )
