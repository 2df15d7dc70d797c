"""`mailplat apply SITE`: show the plan, confirm, provision, record the generation.

Provisioning creates every missing Maildir under <data>/postoffices/<po>/<mailbox>/
(with the postoffice's welcome message in a new one) and never deletes mail.
Without --yes it asks; with no terminal to ask on it refuses (exit 1).
When a server is running on the same data root, the change goes through its
control socket: the server validates, plans, provisions and swaps its config
in one step and answers with the result. With no server it applies offline.
A running server is told even when the YAML did not change, so a renewed
certificate or DKIM key file reaches it. A server that holds the data root
but does not answer (still starting) is never worked around: an offline
apply beside it would race its spool recovery.
Exit codes: 0 applied or nothing to do, 1 error or refused (also when the
server applied the change but could not bind a changed listener).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from mailplat.cli.console import (
    DataOpt,
    JsonOpt,
    SiteArg,
    SiteOpt,
    VerboseOpt,
    emit_json,
    err,
    fail,
    handle,
    ok,
    out,
    site_of,
)
from mailplat.cli.plan import Planned, make_plan, show_config_warnings
from mailplat.cli.plan_view import has_work, plan_to_json, render_plan
from mailplat.control import channel, lock
from mailplat.core.errors import MailplatError
from mailplat.reconcile.apply import ApplyResult, applied_by
from mailplat.reconcile.apply import apply as run_apply

YesOpt = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Apply without asking (needed when stdin is no terminal)."),
]


def apply(
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Apply SITE: create missing Maildirs, deliver welcome messages, record the new generation.

    Shows the plan first and asks for confirmation unless --yes. A mailbox
    removed from the YAML keeps its Maildir and mail; the plan says where.
    On a terminal, provisioning shows a progress bar.
    Exit 0 when applied (or nothing to do), 1 on errors or when refused.
    """
    site = site_of(site, site_opt)
    p = make_plan(site, data, as_json, verbose)
    if not as_json:
        show_config_warnings(p.config, verbose)
        render_plan(out, p.plan, p.effects, p.applied)
    running = _running_status(p.root)
    if running is None:
        _refuse_beside_a_silent_server(p.root)
    work = has_work(p.plan, p.effects) or (
        running is not None and running.get("running_digest") != p.config.digest
    )
    if not work and running is None:
        if as_json:
            emit_json({**plan_to_json(p.plan, p.effects, p.applied), "applied_now": False})
        return
    if work and not yes:
        if not sys.stdin.isatty():
            fail("stdin is not a terminal, so I cannot ask: run with --yes to apply")
        if not typer.confirm("\nApply these changes?", default=False, err=True):
            fail("apply cancelled; nothing was changed")
    if running is not None:
        _apply_live(site, p, as_json)
        return
    try:
        result = _run(p, show_progress=not as_json and err.is_terminal and p.effects.maildirs)
    except MailplatError as exc:
        handle(exc, to_json=as_json)
    if as_json:
        emit_json(
            {
                **plan_to_json(p.plan, p.effects, p.applied),
                "applied_now": True,
                "generation": result.generation.number,
                "created": list(result.created),
                "welcomed": list(result.welcomed),
            }
        )
        return
    _report(result, p.root)


def _running_status(root: Path) -> dict[str, Any] | None:
    """The running server's status, or None when no server uses this data root."""
    try:
        return channel.call(channel.socket_path(root), {"cmd": "status"}, timeout=10)
    except (channel.ControlUnavailable, OSError):
        return None


def _refuse_beside_a_silent_server(root: Path) -> None:
    """Exit 1 when a server holds ROOT but its control socket did not answer."""
    pid = lock.holder(root)
    if pid is None:
        return
    who = f"pid {pid}" if pid > 0 else "another process"
    fail(
        f"a server ({who}) holds the data root {root} but its control socket does not "
        "answer (it may still be starting: spool recovery runs first); try again in a "
        "moment, or stop that server to apply offline"
    )


def _apply_live(site: Path, p: Planned, as_json: bool) -> None:
    """Hand the change to the running server and report what it did."""
    request = {"cmd": "apply", "site": str(site), "by": applied_by()}
    if not as_json:
        out.print(f"\nApplying through the running server ({channel.socket_path(p.root)})...")
    if as_json or not err.is_terminal:
        reply = channel.call(channel.socket_path(p.root), request)
    else:
        # The server provisions and reports once at the end; a spinner with
        # the elapsed time shows it is working (20,000 Maildirs take seconds).
        n = len(p.effects.maildirs)
        work = f"the server is provisioning {n} Maildir(s)" if n else "the server is reloading"
        columns = (SpinnerColumn(), TextColumn(work), TimeElapsedColumn())
        with Progress(*columns, console=err, transient=True) as spinner:
            spinner.add_task("", total=None)
            reply = channel.call(channel.socket_path(p.root), request)
    if as_json:
        emit_json({**plan_to_json(p.plan, p.effects, p.applied), "server": reply})
        if not reply.get("ok") or reply.get("listener_errors"):
            raise typer.Exit(1)
        return
    if not reply.get("ok"):
        err.print(f"[red]error:[/] the server refused the change: {reply.get('error')}")
        for line in reply.get("errors", []):
            err.print(f"  {line}", highlight=False)
        err.print("The server keeps serving the configuration it had.")
        raise typer.Exit(1)
    for line in reply.get("listeners", []):
        out.print(f"  listener {line}", highlight=False)
    for line in reply.get("warnings", []):
        err.print(f"[yellow]warning:[/] {line}", highlight=False)
    if reply.get("created"):
        out.print(f"Created {len(reply['created'])} Maildir(s).")
    parsed = reply.get("files_parsed")
    what = (
        "no YAML file changed"
        if parsed == 0
        else f"{parsed} changed file(s) parsed"
        if parsed is not None
        else "reloaded"
    )
    verb = "applied" if reply.get("written") else "unchanged, reloaded"
    ok(
        f"Live: generation {reply['generation']} ({str(reply['digest'])[:12]}) "
        f"{verb} by the running server in {reply['ms']} ms ({what})."
    )
    errors = reply.get("listener_errors", [])
    for line in errors:
        err.print(f"[red]error:[/] listeners unchanged: {line}", highlight=False)
    if errors:
        err.print(
            "The rest of the change is live; fix the listener (a port in use?) and apply again."
        )
        raise typer.Exit(1)


def _run(p: Planned, show_progress: object) -> ApplyResult:
    """Apply offline; on a terminal with a bar (reconcile reports through a callback)."""
    if not show_progress:
        return run_apply(p.config, p.plan, p.root, applied=p.applied)
    columns = (
        TextColumn("provisioning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("", total=len(p.effects.maildirs))

        def step(done: int, total: int, mailbox: str) -> None:
            bar.update(task, completed=done, total=total, description=mailbox)

        return run_apply(p.config, p.plan, p.root, progress=step, applied=p.applied)


def _report(result: ApplyResult, root: Path) -> None:
    out.print()
    if result.created:
        out.print(f"Created {len(result.created)} Maildir(s) under {root}.", highlight=False)
    if result.welcomed:
        out.print(f"Delivered {len(result.welcomed)} welcome message(s).")
    for k in result.kept:
        if k.exists:
            out.print(
                f"Kept {k.messages} message(s) of removed mailbox {k.mailbox} in {k.path}.",
                highlight=False,
            )
    gen = result.generation
    if result.written:
        ok(f"Apply complete: generation {gen.number} recorded ({gen.digest[:12]}).")
    else:
        ok(f"Apply complete: configuration unchanged, still generation {gen.number}.")


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
