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
# Every command that works on a site takes it the same two ways: a positional
# SITE or --site SITE (`site_of` picks one); never a NAME on one and a PATH on another.
SiteArg = Annotated[
    Path | None,
    typer.Argument(
        help="Site folder holding site.yaml and postoffices/, e.g. sites/example "
        "(or give it as --site).",
        show_default=False,
    ),
]
SiteOpt = Annotated[
    Path | None,
    typer.Option("--site", "-s", help="The site folder, as the SITE argument.", show_default=False),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")
]
VerboseOpt = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="List every warning, also those repeated many times."),
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


# More warnings of one rule than this print as one line with a count (--verbose: all).
GROUP_AFTER = 3


def show_diagnostics(
    diags: Sequence[object], *, to_json: bool = False, verbose: bool = False
) -> None:
    """Print every diagnostic: location, severity, summary, hint.

    Errors are always listed one by one. A warning rule that fired more than
    GROUP_AFTER times (2,000 postoffices without a postmaster) prints its
    first occurrence and a count instead, unless verbose. JSON lists all.
    """
    items = [d for d in diags if isinstance(d, Diagnostic)]
    if to_json:
        emit_json({"ok": False, "diagnostics": [d.to_json() for d in items]})
        return
    by_rule: dict[str, int] = {}
    for d in items:
        if not d.is_error and d.code:
            by_rule[d.code] = by_rule.get(d.code, 0) + 1
    shown: set[str] = set()
    for d in items:
        repeats = by_rule.get(d.code, 0) if not d.is_error and d.code else 0
        if repeats > GROUP_AFTER and not verbose:
            if d.code in shown:
                continue
            shown.add(d.code)
        _print_one(d)
        if repeats > GROUP_AFTER and not verbose:
            err.print(
                f"  [yellow]... and {repeats - 1:,} more like it[/] ({repeats:,} x {d.code}; "
                "--verbose lists them all)",
                highlight=False,
            )
    errors = sum(1 for d in items if d.is_error)
    warnings = len(items) - errors
    if errors:
        err.print(f"[red]{errors} error(s)[/], {warnings} warning(s)")


def _print_one(d: Diagnostic) -> None:
    colour = "red" if d.is_error else "yellow"
    where = f"{d.location}: " if d.location else ""
    err.print(f"{where}[bold {colour}]{d.severity}[/]: ", markup=True, end="")
    err.print(d.summary, markup=False, highlight=False)
    if d.detail:
        err.print(f"  {d.detail}", markup=False)
    if d.hint:
        err.print("  [dim]hint:[/] ", markup=True, end="")
        err.print(d.hint, markup=False, highlight=False)


def optional_site(arg: Path | None, opt: Path | None) -> Path | None:
    """SITE or --site SITE when a command can also do without (--data names the server)."""
    if arg is not None and opt is not None and arg.resolve() != opt.resolve():
        fail(f"two different sites given: {arg} and --site {opt}; name one")
    return arg or opt


def is_site_dir(text: str) -> bool:
    """True for a folder holding a site.yaml (never a message id)."""
    return (Path(text) / "site.yaml").is_file()


def split_site(args: list[str], opt: Path | None) -> tuple[Path | None, list[str]]:
    """`[SITE] ARG...` -> (site, the other args): the first is SITE when it is a site folder.

    For commands whose own arguments are positional (message ids), so SITE can
    still come first as on every other command; --site works as well.
    """
    if args and is_site_dir(args[0]):
        return optional_site(Path(args[0]), opt), args[1:]
    return opt, args


def site_of(arg: Path | None, opt: Path | None) -> Path:
    """The site a command was given, as SITE or --site SITE (both: they must agree)."""
    site = optional_site(arg, opt)
    if site is None:
        fail("which site? name its folder: SITE or --site SITE, e.g. sites/example")
    return site


def pass_down(ctx: typer.Context, **given: object) -> None:
    """Hand options given on a group (`queue --data DIR list`) to the subcommand it runs.

    Called from a group's callback with its options by parameter name. The
    values become the subcommand's defaults (click's default_map), so every
    subcommand and nested group sees them as if typed after its own name,
    and the subcommand's own option, typed there, still wins. An option the
    subcommand does not take is an error rather than silently dropped.
    """
    sub_name = ctx.invoked_subcommand
    values = {name: value for name, value in given.items() if value not in (None, False)}
    if sub_name is None or not values:
        return
    group: Any = ctx.command
    sub = group.get_command(ctx, sub_name)
    takes: set[str | None] = {p.name for p in sub.params} if sub is not None else set()
    for name in values:
        if name not in takes:
            flag = next((p.opts[0] for p in group.params if p.name == name), name)
            fail(f"{flag} does not apply to `{ctx.command_path} {sub_name}`")
    # This group's own defaults were used up when its options were parsed.
    ctx.default_map = {sub_name: values}


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err.print("[bold red]error:[/] ", end="")
    # The message may hold paths, addresses or `[::1]:25`: print it as it is.
    err.print(message, markup=False, highlight=False)
    raise typer.Exit(code)


def handle(exc: MailplatError, *, to_json: bool = False, verbose: bool = False) -> NoReturn:
    """Turn an error from below into output and an exit code."""
    if isinstance(exc, ConfigError):
        show_diagnostics(exc.diagnostics, to_json=to_json, verbose=verbose)
        raise typer.Exit(EXIT_ERROR)
    if to_json:
        emit_json({"ok": False, "error": str(exc)})
        raise typer.Exit(exc.exit_code)
    fail(str(exc), exc.exit_code)


def error_lines(errors: Sequence[object], indent: str = "  ") -> list[str]:
    """One error per line, indented; an error's own further lines (its hint) under it.

    Print the result with markup=False: error texts quote the admin's YAML,
    and a value like `[/lots]` must neither eat text nor raise as console markup.
    """
    lines = []
    for error in errors:
        first, *rest = str(error).splitlines() or [""]
        lines.append(f"{indent}{first}")
        lines.extend(f"{indent}  {more.strip()}" for more in rest if more.strip())
    return lines


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {message}")


def ok(message: str) -> None:
    out.print(f"[bold green]✓[/] {message}")
