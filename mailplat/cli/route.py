"""`mailplat route ADDRESS SITE` (or --site SITE): how one recipient resolves, step by step.

Uses the functions the server uses (config.expand for routing,
auth.relay.decide and the SMTP sender rule for relaying), so the explanation
is the behaviour. Exit codes: 0 deliverable and allowed, 3 rejected or relay
denied, 1 error (bad config, not an address, not an IP, unknown login).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

import typer

from mailplat.auth.relay import Client, decide
from mailplat.cli.check import load_valid
from mailplat.cli.console import JsonOpt, SiteArg, SiteOpt, emit_json, fail, out, site_of
from mailplat.config.expand import expand
from mailplat.connectors.smtp_in.policy import check_sender
from mailplat.core.address import try_parse

EXIT_REFUSED = 3
OUTSIDE_IP = "203.0.113.1"  # TEST-NET-3 (RFC 5737): an unprivileged outside client


def route(
    address: Annotated[str, typer.Argument(help="Recipient address to resolve.")],
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    sender: Annotated[
        str | None, typer.Option("--from", help="Envelope sender (MAIL FROM).")
    ] = None,
    ip: Annotated[
        str,
        typer.Option("--ip", help="Client IP; default 203.0.113.1, an outside client."),
    ] = OUTSIDE_IP,
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            metavar="LOGIN",
            help="Authenticated login (mailbox@postoffice, an address, or a bare name).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain where ADDRESS goes: each expansion step, the final destinations, the relay verdict.

    Exit 0 when the mail would be accepted and delivered somewhere, 3 when a
    destination rejects it or relaying is denied, 1 on errors.
    """
    try:
        # Normalised as the server sees a peer (`::1`, not `0:0:0:0:0:0:0:1`).
        ip = str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        fail(f"--ip {ip!r} is not an IP address, e.g. 203.0.113.1 or 2001:db8::1")
    _, directory, _ = load_valid(site_of(site, site_opt), as_json)
    rcpt = try_parse(address)
    if rcpt is None:
        fail(f"{address!r} is not a mail address")
    from_addr = None
    if sender is not None:
        from_addr = try_parse(sender)
        if from_addr is None:
            fail(f"--from {sender!r} is not a mail address")
    login_key = None
    if auth is not None:
        mailbox = directory.mailbox_for_login(auth)
        if mailbox is None:
            fail(f"login {auth!r} matches no mailbox")
        login_key = mailbox.key
    expansion = expand(directory, rcpt)
    verdict = decide(directory, Client(ip=ip, login=login_key, sender=from_addr), rcpt)
    sender_refused = check_sender(directory, from_addr, login_key)
    rejected = [d for d in expansion.destinations if d.kind == "reject"]
    accepted = verdict.allowed and not rejected and sender_refused is None
    result: dict[str, Any] = {
        "address": rcpt.key,
        "trace": expansion.trace,
        "destinations": [
            {
                "label": d.label,
                "kind": d.kind,
                "target": d.target,
                "reason": d.reason,
                "catchall": d.catchall,
                "via": d.via,
            }
            for d in expansion.destinations
        ],
        "relay": {
            "allowed": verdict.allowed,
            "relaying": verdict.relaying,
            "reason": verdict.reason,
            "client": {"ip": ip, "login": login_key, "from": str(from_addr) if from_addr else None},
        },
        "sender_refused": sender_refused,
        "accepted": accepted,
    }
    if as_json:
        emit_json(result)
    else:
        _render(result)
    raise typer.Exit(0 if accepted else EXIT_REFUSED)


def _render(result: dict[str, Any]) -> None:
    out.print(f"[bold]{result['address']}[/]", highlight=False)
    out.print("\n[bold]Steps:[/]")
    for line in result["trace"]:
        out.print(f"  {line}", highlight=False, markup=False)
    out.print("\n[bold]Destinations:[/]")
    for d in result["destinations"]:
        colour = "red" if d["kind"] == "reject" else "green"
        extra = []
        if d["catchall"]:
            extra.append("via catchall")
        if d["via"]:
            extra.append(f"via smart host {d['via']}")
        if d["kind"] == "reject" and d["reason"]:
            extra.append(d["reason"])
        suffix = f" ({'; '.join(extra)})" if extra else ""
        out.print(f"  [{colour}]{d['label']}[/]{suffix}", highlight=False)
    relay = result["relay"]
    client = relay["client"]
    who = f"client {client['ip']}" + (
        f", logged in as {client['login']}" if client["login"] else ""
    )
    out.print(f"\n[bold]Relay[/] ({who}):")
    word = "[green]allowed[/]" if relay["allowed"] else "[red]denied[/]"
    kind = "relaying" if relay["relaying"] else "local delivery, no relaying needed"
    out.print(f"  {word}: {relay['reason']} ({kind})", highlight=False)
    if result["sender_refused"]:
        out.print(
            f"  [red]sender refused[/]: {client['from']} is not an address of "
            f"{client['login']} (security.auth_sender_must_match)",
            highlight=False,
        )
    verdict = "[green]accepted[/]" if result["accepted"] else "[red]refused[/]"
    out.print(f"\nResult: {verdict}")


def register(app: typer.Typer) -> None:
    app.command("route")(route)
