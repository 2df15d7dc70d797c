"""`mailplat users import|export`: mailboxes in and out of the seed's CSV format.

import: `emailaddress,password,quota` rows (password and quota optional) into
a postoffice's YAML, keeping its comments and order; domains are added when
needed; plain passwords are hashed; the site is validated before the change is
kept. The file is UTF-8 (Excel's BOM is fine) unless --encoding names another;
every bad line is its own `error: FILE:LINE: ...` (`<stdin>:LINE` for -).
export: CSV of chosen fields to stdout; an unknown --postoffice is an error
naming those that exist. Exit 0 ok, 1 error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mailplat.cli.check import load_valid
from mailplat.cli.console import (
    SiteArg,
    SiteOpt,
    err,
    fail,
    handle,
    ok,
    out,
    pass_down,
    site_of,
)
from mailplat.core.errors import MailplatError
from mailplat.reconcile.users import (
    DEFAULT_EXPORT_FIELDS,
    EXPORT_FIELDS,
    UsersError,
    export_rows,
    import_users,
    read_csv,
    write_csv,
)

users_app = typer.Typer(help="Import or export mailboxes as CSV (emailaddress,password,quota).")


@users_app.callback()
def users_group(ctx: typer.Context, site_opt: SiteOpt = None) -> None:
    """Import or export mailboxes as CSV; --site works here too (`users --site SITE export`)."""
    pass_down(ctx, site_opt=site_opt)


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
    encoding: Annotated[
        str | None,
        typer.Option(
            metavar="ENCODING",
            help="The file's encoding when it is not UTF-8, e.g. cp1252 (Excel's plain CSV "
            "on Windows) or latin-1. Default: UTF-8, with or without a BOM.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Add or update mailboxes of POSTOFFICE from a CSV file (the seed's import format).

    The mailbox name is the address's local part; a missing domain is added to
    the postoffice; a plain password is hashed (argon2id). Comments and order in
    the YAML are kept. The result is validated; an invalid site is rolled back.
    """
    stdin = str(file) == "-"
    source = "<stdin>" if stdin else str(file)
    try:
        data = sys.stdin.buffer.read() if stdin else file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    try:
        rows = read_csv(data, source, encoding)
        result = import_users(site_of(site, site_opt), postoffice, rows)
    except UsersError as exc:
        # One `error:` line per bad row, so each can be found and fixed.
        for problem in exc.problems:
            err.print("[bold red]error:[/] ", end="")
            err.print(problem, markup=False, highlight=False)
        raise typer.Exit(1) from None
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
    if postoffice is not None and postoffice not in config.postoffices:
        fail(
            f"no postoffice {postoffice!r} in {config.root}; it has: "
            + ", ".join(sorted(config.postoffices))
        )
    chosen = [f.strip() for f in fields.split(",") if f.strip()]
    try:
        rows = export_rows(config, chosen, postoffice)
    except MailplatError as exc:
        handle(exc)
    sys.stdout.write(write_csv(rows, chosen if header else None))


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
