"""Terminal output for every command: rich console, diagnostics, exit codes.

Colour goes to terminals only (rich decides); `--json` output goes through
`emit_json` so scripts get one JSON document on stdout and nothing else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from mailplat.config.diagnostics import Diagnostic
from mailplat.core.errors import ConfigError, MailplatError

# Option types shared by the commands, so --help reads the same everywhere.
SiteArg = Annotated[
    Path,
    typer.Argument(help="Site folder holding site.yaml and postoffices/, e.g. sites/example."),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="DIR",
        help="Data root (Maildirs, queues, state). Default: $MAILPLAT_DATA, else the "
        "site's server.data_root, else the checkout's queues/<site>.",
    ),
]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2


def emit_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def show_diagnostics(diags: Sequence[object], *, to_json: bool = False) -> None:
    """Print every diagnostic: location, severity, summary, hint."""
    items = [d for d in diags if isinstance(d, Diagnostic)]
    if to_json:
        emit_json({"ok": False, "diagnostics": [d.to_json() for d in items]})
        return
    for d in items:
        colour = "red" if d.is_error else "yellow"
        where = f"{d.location}: " if d.location else ""
        err.print(f"{where}[bold {colour}]{d.severity}[/]: {d.summary}", markup=True)
        if d.detail:
            err.print(f"  {d.detail}", markup=False)
        if d.hint:
            err.print(f"  [dim]hint:[/] {d.hint}", markup=True)
    errors = sum(1 for d in items if d.is_error)
    warnings = len(items) - errors
    if errors:
        err.print(f"[red]{errors} error(s)[/], {warnings} warning(s)")


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def handle(exc: MailplatError, *, to_json: bool = False) -> NoReturn:
    """Turn an error from below into output and an exit code."""
    if isinstance(exc, ConfigError):
        show_diagnostics(exc.diagnostics, to_json=to_json)
        raise typer.Exit(EXIT_ERROR)
    if to_json:
        emit_json({"ok": False, "error": str(exc)})
        raise typer.Exit(exc.exit_code)
    fail(str(exc), exc.exit_code)


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {message}")


def ok(message: str) -> None:
    out.print(f"[bold green]✓[/] {message}")
