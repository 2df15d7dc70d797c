"""`mailplat plan SITE`: what apply would change, Terraform's way.

Compares the working tree with the last applied generation in the data root
and prints `+ ~ -` per object, the effects (Maildirs to create, mail kept for
removed mailboxes, listeners to rebind, warnings) and the routing diff.
Exit codes: 0 no changes, 2 changes pending, 1 error (including a failing
expect.yaml case).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import typer

from mailplat.cli.check import load_checked
from mailplat.cli.console import (
    EXIT_CHANGES,
    EXIT_OK,
    DataOpt,
    JsonOpt,
    SiteArg,
    SiteOpt,
    VerboseOpt,
    emit_json,
    handle,
    out,
    show_diagnostics,
    site_of,
)
from mailplat.cli.plan_view import has_work, plan_to_json, render_plan
from mailplat.config.directory import Directory
from mailplat.config.load import SiteConfig, data_root
from mailplat.core.errors import MailplatError
from mailplat.reconcile.apply import observe
from mailplat.reconcile.diff import Plan, diff
from mailplat.reconcile.effects import Effects, effects
from mailplat.reconcile.state import Generation, read_generation


@dataclass(frozen=True)
class Planned:
    config: SiteConfig
    directory: Directory | None  # built only when expect.yaml or the routing diff needed it
    root: Path
    applied: Generation | None
    plan: Plan
    effects: Effects


def make_plan(
    site: Path, data: str | None, to_json: bool, verbose: bool = False, values: bool = True
) -> Planned:
    """Load (refusing invalid config), read the applied generation, diff, observe.

    values=False (the text plan, which shows what is added by name only)
    leaves the objects of a first plan without their values; apply and
    --json need them.
    """
    config, directory, _ = load_checked(site, to_json, verbose)
    root = data_root(config, data, os.environ.get("MAILPLAT_DATA"))
    try:
        applied = read_generation(root)
        plan = diff(
            applied.snapshot if applied else None,
            config,
            old_digest=applied.digest if applied else None,
            new_directory=directory,
            applied=applied,
            values=values,
        )
        fx = effects(plan, config, observe(config, plan, root))
    except MailplatError as exc:
        handle(exc, to_json=to_json)
    return Planned(config, directory, root, applied, plan, fx)


def plan(
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show what `mailplat apply SITE` would change, without changing anything.

    Exit 0 when there is nothing to do, 2 when changes are pending, 1 on errors
    (invalid YAML or a failing expect.yaml case; every error is listed).
    """
    p = make_plan(site_of(site, site_opt), data, as_json, verbose, values=as_json)
    if as_json:
        emit_json(plan_to_json(p.plan, p.effects, p.applied))
    else:
        show_config_warnings(p.config, verbose)
        render_plan(out, p.plan, p.effects, p.applied)
    raise typer.Exit(EXIT_CHANGES if has_work(p.plan, p.effects) else EXIT_OK)


def show_config_warnings(config: SiteConfig, verbose: bool = False) -> None:
    if config.warnings:
        show_diagnostics(list(config.warnings), verbose=verbose)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
