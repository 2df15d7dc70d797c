"""`mailplat validate SITE` (alias `check`): load, validate, run expect.yaml; report all.

Also the shared first step of plan and apply: `load_valid` loads a site and
refuses it, with every diagnostic, when the YAML or an expect.yaml case fails.
Exit codes: 0 valid (warnings allowed), 1 errors.
"""

from __future__ import annotations

import gc
from pathlib import Path

import typer

from mailplat.cli.console import (
    EXIT_ERROR,
    JsonOpt,
    SiteArg,
    SiteOpt,
    VerboseOpt,
    emit_json,
    err,
    handle,
    ok,
    out,
    show_diagnostics,
    site_of,
)
from mailplat.config.directory import Directory
from mailplat.config.dkimkeys import check_dkim_keys
from mailplat.config.load import SiteConfig, load_site
from mailplat.config.tlsfiles import check_tls_files
from mailplat.core.errors import MailplatError
from mailplat.reconcile.expect import ExpectReport, run_expectations


def load_valid(
    site: Path, to_json: bool, verbose: bool = False
) -> tuple[SiteConfig, Directory, ExpectReport]:
    """The loaded site, its Directory and expect.yaml report; exit 1 on any error."""
    config, directory, report = load_checked(site, to_json, verbose)
    return config, directory or Directory(config), report


def load_checked(
    site: Path, to_json: bool, verbose: bool = False
) -> tuple[SiteConfig, Directory | None, ExpectReport]:
    """load_valid, but the Directory is built only when expect.yaml needs it.

    Validating and planning a big site route nothing otherwise (the plan's
    routing diff builds what it needs).
    """
    # A command is one short process building a million small objects that
    # live until it exits: the cyclic collector would only walk them again.
    gc.disable()
    try:
        if to_json or not err.is_terminal:
            config = load_site(site)
        else:
            # A big site takes seconds to read and check; say so on a terminal.
            with err.status(f"reading and checking {site} ...", spinner="dots"):
                config = load_site(site)
    except MailplatError as exc:
        handle(exc, to_json=to_json, verbose=verbose)
    directory = Directory(config) if config.expect is not None else None
    report = (
        run_expectations(config, directory) if directory is not None else ExpectReport(0, 0, ())
    )
    if not report.ok:
        show_diagnostics([*config.warnings, *report.diagnostics], to_json=to_json, verbose=verbose)
        raise typer.Exit(EXIT_ERROR)
    return config, directory, report


def counts(config: SiteConfig) -> dict[str, int]:
    pos = config.postoffices.values()
    return {
        "postoffices": len(config.postoffices),
        "domains": sum(len(p.domains) for p in pos),
        "mailboxes": sum(len(p.mailboxes) for p in pos),
        "groups": sum(len(p.groups) for p in pos),
        "lists": sum(len(p.lists) for p in pos),
    }


def validate(
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check SITE: YAML syntax, every key and type, cross-object rules, expect.yaml cases,
    and that every declared DKIM key file exists on this host and is the declared kind.

    Every problem is reported at once with file:line:col (relative to the
    current directory) and a hint. A warning repeated many times prints once
    with a count; --verbose lists every one.
    Exit 0 when valid (warnings allowed), 1 on any error.
    """
    config, _, report = load_checked(site_of(site, site_opt), as_json, verbose)
    # DKIM keys are files on this host: checked here and by serve, not by every load.
    key_errors = check_dkim_keys(config)
    # TLS files too, but only as a warning: serve and a reload refuse a bad one anyway.
    warnings = [*config.warnings, *check_tls_files(config)]
    if key_errors:
        show_diagnostics([*warnings, *key_errors], to_json=as_json, verbose=verbose)
        raise typer.Exit(EXIT_ERROR)
    n = counts(config)
    if as_json:
        emit_json(
            {
                "ok": True,
                "site": config.name,
                "digest": config.digest,
                "counts": n,
                "expect": {"routes": report.routes, "relay": report.relay},
                "diagnostics": [d.to_json() for d in warnings],
            }
        )
        return
    show_diagnostics(warnings, verbose=verbose)
    ok(
        f"site [bold]{config.name}[/] is valid: {n['postoffices']} postoffices, "
        f"{n['domains']} domains, {n['mailboxes']} mailboxes, {n['groups']} groups, "
        f"{n['lists']} lists"
    )
    if config.expect is not None:
        out.print(
            f"  expect.yaml: {report.routes} route and {report.relay} relay cases pass",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("check", hidden=True, help="Alias of validate.")(validate)
