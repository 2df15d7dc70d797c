"""`mailplat dns SITE [--json]`: the DNS records to publish, and whether DNS has them.

For every hosted domain: MX, SPF, DKIM per selector, DMARC, MTA-STS (when
server.mta_sts is set) and the SRV records mail clients use; for the server:
its host name's address and the PTR of each address. Each record is asked
of DNS through the site's resolver (server.dns_servers) and marked present,
missing, different or unknown. Exit 0 when everything is present, 2 when
something is to publish or fix (as `plan` says "changes"), 1 on an error.
"""

from __future__ import annotations

import asyncio

import typer

from mailplat.cli.console import (
    EXIT_CHANGES,
    JsonOpt,
    SiteArg,
    SiteOpt,
    emit_json,
    handle,
    out,
    site_of,
)
from mailplat.config.load import load_site
from mailplat.core.errors import MailplatError
from mailplat.dns.resolver import Resolver
from mailplat.trust.keys import zone_line
from mailplat.trust.records import (
    DIFFERENT,
    MISSING,
    PRESENT,
    UNKNOWN,
    Checked,
    Report,
    check,
)

_MARK = {
    PRESENT: "[green]present  [/]",
    MISSING: "[red]missing  [/]",
    DIFFERENT: "[yellow]different[/]",
}
DNS_TIMEOUT = 5.0


def dns(site: SiteArg = None, site_opt: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """Print the DNS records SITE needs (MX, SPF, DKIM, DMARC, MTA-STS, SRV, PTR), each
    checked against what DNS answers now: present, missing, different or unknown.

    Exit 0 when all are present, 2 when some must be published or fixed.
    """
    try:
        config = load_site(site_of(site, site_opt))
    except MailplatError as exc:
        handle(exc, to_json=as_json)
    resolver = Resolver(config.site.server.dns_servers, timeout=DNS_TIMEOUT)
    report = asyncio.run(check(config, resolver))
    if as_json:
        emit_json(
            {
                "ok": True,
                "complete": report.complete,
                "records": [c.to_json() for c in report.records],
                "mta_sts_policy": report.mta_sts_policy or None,
            }
        )
    else:
        _print(report)
    if not report.complete:
        raise typer.Exit(EXIT_CHANGES)


def _zone(c: Checked) -> str:
    w = c.wanted
    if w.rtype == "TXT":
        return zone_line(w.name, w.value) if w.value else f"{w.name}. IN TXT (no key yet)"
    return f"{w.name}. IN {w.rtype} {w.value}"


def _print(report: Report) -> None:
    current = None
    for c in report.records:
        w = c.wanted
        heading = w.domain or "this server"
        if heading != current:
            current = heading
            out.print(f"\n[bold]{heading}[/]")
        out.print(f"  {_MARK.get(c.status, '[red]unknown  [/]')} ", end="")
        out.print(_zone(c), markup=False, highlight=False)
        out.print(f"      {w.purpose}", markup=False, style="dim")
        if w.note:
            out.print(f"      note: {w.note}", markup=False, style="yellow")
        if c.status in (DIFFERENT, UNKNOWN) and c.found:
            label = "DNS has" if c.status == DIFFERENT else "DNS failed"
            out.print(f"      {label}: {'; '.join(c.found)[:300]}", markup=False, style="yellow")
    if report.mta_sts_policy:
        out.print(
            "\nServe this MTA-STS policy as text/plain at https://mta-sts.<domain>/.well-known/mta-sts.txt:"
        )
        out.print(report.mta_sts_policy, markup=False)
    done = sum(1 for c in report.records if c.status == PRESENT)
    out.print(f"\n{done} of {len(report.records)} records present.")


def register(app: typer.Typer) -> None:
    app.command("dns")(dns)
