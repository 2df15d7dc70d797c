"""`mailplat users import|export`: mailboxes in and out of the seed's CSV format.

import: `emailaddress,password,quota` rows (password and quota optional) into
a postoffice's YAML, keeping its comments and order; domains are added when
needed; plain passwords are hashed; the site is validated before the change is
kept. export: CSV of chosen fields to stdout. Exit 0 ok, 1 error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mailplat.cli.check import load_valid
from mailplat.cli.console import SiteArg, SiteOpt, err, handle, ok, out, site_of
from mailplat.core.errors import MailplatError
from mailplat.reconcile.users import (
    DEFAULT_EXPORT_FIELDS,
    EXPORT_FIELDS,
    export_rows,
    import_users,
    parse_csv,
    write_csv,
)

users_app = typer.Typer(help="Import or export mailboxes as CSV (emailaddress,password,quota).")


@users_app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(help="CSV file with emailaddress,password,quota rows; - for stdin.")
    ],
    postoffice: Annotated[
        str, typer.Option("--postoffice", "-p", help="Postoffice that gets the mailboxes.")
    ],
    site: SiteArg = None,
    site_opt: SiteOpt = None,
) -> None:
    """Add or update mailboxes of POSTOFFICE from a CSV file (the seed's import format).

    The mailbox name is the address's local part; a missing domain is added to
    the postoffice; a plain password is hashed (argon2id). Comments and order in
    the YAML are kept. The result is validated; an invalid site is rolled back.
    """
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text("utf-8")
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot read {file}: {exc}")
        raise typer.Exit(1) from exc
    try:
        rows = parse_csv(text, str(file))
        result = import_users(site_of(site, site_opt), postoffice, rows)
    except MailplatError as exc:
        handle(exc)
    for d in result.domains_added:
        out.print(f"  [green]+[/] domain {d}", highlight=False)
    for a in result.added:
        out.print(f"  [green]+[/] mailbox {a}", highlight=False)
    for a in result.updated:
        out.print(f"  [yellow]~[/] mailbox {a}", highlight=False)
    ok(
        f"{result.file}: {len(result.added)} added, {len(result.updated)} updated, "
        f"{len(result.domains_added)} domain(s) added. Run `mailplat plan` to see the effect."
    )


@users_app.command("export")
def export(
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    fields: Annotated[
        str,
        typer.Option(
            help=f"Comma-separated columns, from: {', '.join(EXPORT_FIELDS)}.",
        ),
    ] = ",".join(DEFAULT_EXPORT_FIELDS),
    postoffice: Annotated[
        str | None, typer.Option("--postoffice", "-p", help="Only this postoffice.")
    ] = None,
    header: Annotated[bool, typer.Option(help="Print a header row first.")] = False,
) -> None:
    """Write every mailbox as CSV to stdout (default columns: email,password,quota)."""
    config, _, _ = load_valid(site_of(site, site_opt), False)
    chosen = [f.strip() for f in fields.split(",") if f.strip()]
    try:
        rows = export_rows(config, chosen, postoffice)
    except MailplatError as exc:
        handle(exc)
    sys.stdout.write(write_csv(rows, chosen if header else None))


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
