"""Cross-object rules of a site, checked after every file has the right shape.

Input: a SiteConfig whose files each validated. Output: every Diagnostic
found (errors and warnings), each with a file and a path into it; the loader
turns paths into line:col. Rules:
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

from mailplat.config.confusable import mixed_scripts, skeleton, unicode_name
from mailplat.config.diagnostics import Diagnostic, PathPart, error, warning
from mailplat.config.load import Gaps, SiteConfig
from mailplat.config.models.base import split_host_port
from mailplat.config.models.site import Site
from mailplat.core.address import try_parse
from mailplat.core.netmatch import is_open_range

Owner = tuple[str, tuple[PathPart, ...], str]  # file, path, description


def validate_site(config: SiteConfig, gaps: Gaps | None = None) -> list[Diagnostic]:
    """Every cross-object problem of a site.

    `gaps` names what did not parse (a broken site.yaml, postoffice files,
    entries dropped from a file); rules that would need those stay silent.
    """
    gaps = gaps or Gaps()
    diags: list[Diagnostic] = []
    diags += _check_site(config, gaps)
    if gaps.site_ok(("listeners",), ("server", "host_name"), ("delivery", "smart_host")):
        diags += _check_smart_hosts(config)
    owners, edges, targets = _collect(config, diags, gaps)
    diags += _check_targets(config, owners, targets, gaps)
    diags += _check_loops(config, edges)
    diags += _check_postmaster_autoreply(config, owners)
    diags += _check_lookalike_domains(config)
    diags += _check_reserved_names(config)
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
                out.append(
                    error(
                        config.files[po_name],
                        ("domains", dname, "smart_host"),
                        f"smart host {dom.smart_host} of domain {dname} is this server's own "
                        f"listener ({ours}): its mail would loop back to us",
                        hint,
                    )
                )
    return out


def _collect(
    config: SiteConfig, diags: list[Diagnostic], gaps: Gaps
) -> tuple[
    dict[str, Owner], dict[str, list[str]], list[tuple[str, tuple[PathPart, ...], str, str]]
]:
    """Build the site-wide address table; record ownership clashes and foreign domains."""
    owners: dict[str, Owner] = {}
    domain_owner: dict[str, tuple[str, str]] = {}
    edges: dict[str, list[str]] = {}
    targets: list[tuple[str, tuple[PathPart, ...], str, str]] = []  # file, path, po, target

    def claim(addr: str, file: str, path: tuple[PathPart, ...], what: str) -> None:
        if addr in owners:
            ofile, _, owhat = owners[addr]
            diags.append(
                error(
                    file,
                    path,
                    f"address {addr} already belongs to {owhat} ({ofile})",
                    "an address can go to one target only; use a group to reach several",
                )
            )
        else:
            owners[addr] = (file, path, what)

    for po_name, po in config.postoffices.items():
        file = config.files[po_name]
        if not po.domains:
            diags.append(
                error(file, ("domains",), "a postoffice needs at least one domain", "add domains:")
            )
        for dname in po.domains:
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
        own = set(po.domains)
        for mb_name, mb in po.mailboxes.items():
            if po.auto_address:
                for d in po.domains:
                    claim(
                        f"{mb_name.lower()}@{d}",
                        file,
                        ("mailboxes", mb_name),
                        f"mailbox {po_name}/{mb_name}",
                    )
            for i, extra in enumerate(mb.addresses):
                parsed = try_parse(extra)
                if parsed is None:
                    continue
                path: tuple[PathPart, ...] = ("mailboxes", mb_name, "addresses", i)
                if parsed.domain not in own:
                    diags.append(
                        error(
                            file,
                            path,
                            f"{extra} uses domain {parsed.domain}, which is not a domain of "
                            f"postoffice {po_name}",
                            f"add {parsed.domain} under domains: or use one of: "
                            + ", ".join(sorted(own)),
                        )
                    )
                claim(parsed.key, file, path, f"mailbox {po_name}/{mb_name}")
            mb_keys = [f"{mb_name.lower()}@{d}" for d in po.domains] if po.auto_address else []
            mb_keys += [p.key for p in map(try_parse, mb.addresses) if p]
            if mb.redirect is not None:
                for i, to in enumerate(mb.redirect.to):
                    parsed = try_parse(to)
                    if parsed is None:
                        continue
                    targets.append(
                        (file, ("mailboxes", mb_name, "redirect", "to", i), po_name, parsed.key)
                    )
                    if not mb.redirect.keep_copy:
                        for k in mb_keys:
                            edges.setdefault(k, []).append(parsed.key)
        for g_name, group in po.groups.items():
            parsed = try_parse(group.address)
            if parsed is None:
                continue
            if parsed.domain not in own:
                diags.append(
                    error(
                        file,
                        ("groups", g_name, "address"),
                        f"group address {group.address} is not on a domain of postoffice {po_name}",
                        "use one of: " + ", ".join(sorted(own)),
                    )
                )
            claim(parsed.key, file, ("groups", g_name, "address"), f"group {po_name}/{g_name}")
            for i, m in enumerate(group.members):
                member = try_parse(m)
                if member is None:
                    continue
                edges.setdefault(parsed.key, []).append(member.key)
                targets.append((file, ("groups", g_name, "members", i), po_name, member.key))
        for l_name, lst in po.lists.items():
            if lst.domain not in own:
                diags.append(
                    error(
                        file,
                        ("lists", l_name, "domain"),
                        f"list domain {lst.domain} is not a domain of postoffice {po_name}",
                        "use one of: " + ", ".join(sorted(own)),
                    )
                )
            claim(
                f"{l_name.lower()}@{lst.domain}",
                file,
                ("lists", l_name),
                f"list {po_name}/{l_name}",
            )
            targets.append((file, ("lists", l_name, "owner"), po_name, lst.owner))
        for dname, dom in po.domains.items():
            for attr in ("abuse", "postmaster", "catchall"):
                value = getattr(dom, attr)
                if value:
                    targets.append((file, ("domains", dname, attr), po_name, value))
        has_postmaster = (
            "postmaster" in {m.lower() for m in po.mailboxes}
            or gaps.removed(po_name, "mailboxes", "postmaster")
            or all(d.postmaster for d in po.domains.values())
        )
        if po.domains and not has_postmaster:
            diags.append(
                warning(
                    file,
                    ("mailboxes",),
                    f"postoffice {po_name} has no postmaster mailbox",
                    "RFC 5321 §4.5.1 requires postmaster@ for every domain: add a mailbox "
                    "named postmaster or a postmaster: target on each domain",
                    code="no-postmaster",
                )
            )
    return owners, edges, targets


def _check_targets(
    config: SiteConfig,
    owners: dict[str, Owner],
    targets: list[tuple[str, tuple[PathPart, ...], str, str]],
    gaps: Gaps,
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    domain_po = {d: name for name, po in config.postoffices.items() for d in po.domains}
    local_domains = set(domain_po)
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
        parsed = try_parse(target)
        if parsed is None:
            out.append(error(file, path, f"{target!r} is not a valid address"))
            continue
        if parsed.domain in local_domains and parsed.key not in owners:
            if gaps.incomplete(domain_po[parsed.domain]):
                continue  # the owner may be an entry that failed to parse
            local = parsed.local.lower()
            dom = next(
                po.domains[parsed.domain]
                for po in config.postoffices.values()
                if parsed.domain in po.domains
            )
            aliased = (local == "abuse" and dom.abuse) or (local == "postmaster" and dom.postmaster)
            # A catchall only rescues a target that is not the catchall itself
            # (catchall: ghost@same.domain would route to itself forever).
            self_catchall = path[-1] == "catchall" and path[-2] == parsed.domain
            via_catchall = bool(dom.catchall) and not self_catchall
            if not aliased and not via_catchall and not dom.smart_host:
                out.append(
                    error(
                        file,
                        path,
                        f"{parsed.key} is on a local domain but no mailbox, group or list has it",
                        "create it or correct the address",
                    )
                )
    return out


def _check_postmaster_autoreply(config: SiteConfig, owners: dict[str, Owner]) -> list[Diagnostic]:
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

    for po_name, po in config.postoffices.items():
        for mb_name in po.mailboxes:
            if mb_name.lower() == "postmaster":
                flag(po_name, mb_name, "it is named postmaster")
        for dname, dom in po.domains.items():
            target = dom.postmaster
            if not target:
                continue
            why = f"postmaster: of domain {dname}"
            if "@" not in target:
                flag(po_name, target, why)
                continue
            parsed = try_parse(target)
            owner = owners.get(parsed.key) if parsed else None
            mailbox = _mailbox_of(owner) if owner else None
            if mailbox:
                flag(*mailbox, why)
    return out


def _check_lookalike_domains(config: SiteConfig) -> list[Diagnostic]:
    """Warn about domains a reader can mistake for another (homographs)."""
    out: list[Diagnostic] = []
    seen: dict[str, tuple[str, str]] = {}  # skeleton -> (domain, postoffice)
    for po_name, po in config.postoffices.items():
        file = config.files[po_name]
        for dname in po.domains:
            shown = unicode_name(dname)
            label_of = f"{shown} ({dname})" if shown != dname else dname
            for label in shown.split("."):
                scripts = mixed_scripts(label)
                if scripts:
                    out.append(
                        warning(
                            file,
                            ("domains", dname),
                            f"domain {label_of} mixes {' and '.join(s.title() for s in scripts)} "
                            f"letters in {label!r}: it can pass for another name",
                            "write each label in one script; if the name is meant so, "
                            "this warning can be ignored",
                            code="mixed-script",
                        )
                    )
            key = skeleton(dname)
            other = seen.get(key)
            if other is None:
                seen[key] = (dname, po_name)
            elif other[0] != dname:
                out.append(
                    warning(
                        file,
                        ("domains", dname),
                        f"domain {label_of} looks like domain {unicode_name(other[0])} "
                        f"(postoffice {other[1]}): readers cannot tell them apart",
                        "check that both are meant; a look-alike domain is a phishing tool",
                        code="confusable-domain",
                    )
                )
    return out


# Device names Windows refuses as file names, with any extension (con.txt too).
_RESERVED = {"con", "prn", "aux", "nul"} | {f"{d}{n}" for d in ("com", "lpt") for n in range(1, 10)}


_RENAME_HINT = {
    "mailbox": "rename it (e.g. {name}-box) and list {name}@ under addresses: to keep the address",
    "group": "rename the group; its address: stays as it is",
    "list": "rename the list (its address is <name>@<domain>, so that changes too)",
}


def _check_reserved_names(config: SiteConfig) -> list[Diagnostic]:
    """Warn about names that cannot be a file or folder on Windows filesystems."""
    out: list[Diagnostic] = []
    for po_name, po in config.postoffices.items():
        file = config.files[po_name]
        named = [
            *(("mailbox", "mailboxes", n) for n in po.mailboxes),
            *(("group", "groups", n) for n in po.groups),
            *(("list", "lists", n) for n in po.lists),
        ]
        for what, coll, name in named:
            if name.split(".", 1)[0].lower() in _RESERVED:
                out.append(
                    warning(
                        file,
                        (coll, name),
                        f"{what} name {name!r} is reserved on Windows filesystems "
                        "(CON, PRN, AUX, NUL, COM1-9, LPT1-9, with any extension): its folder "
                        "cannot be copied to, backed up on or served from one",
                        _RENAME_HINT[what].format(name=name),
                        code="reserved-name",
                    )
                )
    return out


def _mailbox_of(owner: Owner) -> tuple[str, str] | None:
    """(postoffice, mailbox) of an address owned by a mailbox (see claim() in _collect)."""
    kind, _, name = owner[2].partition(" ")
    po_name, _, mb_name = name.partition("/")
    return (po_name, mb_name) if kind == "mailbox" and mb_name else None


def _check_loops(config: SiteConfig, edges: dict[str, list[str]]) -> list[Diagnostic]:
    """Report each cycle in the group/redirect graph once."""
    out: list[Diagnostic] = []
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    reported: set[frozenset[str]] = set()
    where = _edge_sources(config)

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    file, path = where.get(cycle[0], (config.site_file, ()))
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

    for node in list(edges):
        if node not in state:
            visit(node, [])
    return out


def _edge_sources(config: SiteConfig) -> dict[str, tuple[str, tuple[PathPart, ...]]]:
    where: dict[str, tuple[str, tuple[PathPart, ...]]] = {}
    for po_name, po in config.postoffices.items():
        file = config.files[po_name]
        for g_name, group in po.groups.items():
            parsed = try_parse(group.address)
            if parsed:
                where[parsed.key] = (file, ("groups", g_name, "members"))
        for mb_name, mb in po.mailboxes.items():
            if mb.redirect is not None:
                for d in po.domains:
                    where[f"{mb_name.lower()}@{d}"] = (file, ("mailboxes", mb_name, "redirect"))
    return where
