"""`mailplat status`: what the running server serves and how it is doing.

Reads the server's status over the control socket: generation and config
hash, when and by whom it was applied, listeners, queue sizes, how many
damaged spool files are in quarantine, and the last
change it refused with its errors. Exit 0 when a server answered, 1 when none
runs on this data root.
"""

from __future__ import annotations

import os
from typing import Any

import typer

from mailplat.cli.console import (
    DataOpt,
    JsonOpt,
    SiteArg,
    SiteOpt,
    emit_json,
    error_lines,
    fail,
    out,
    site_of,
)
from mailplat.config.load import data_root_of_dir
from mailplat.control import channel


def status(
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the running server's generation, listeners, queues and last refused change."""
    site = site_of(site, site_opt)
    if not site.is_dir():
        fail(f"site folder {site} does not exist")
    # Not load_site: a broken working tree must not hide the running server's
    # status, which is exactly where its last refused change is shown.
    root = data_root_of_dir(site, data, os.environ.get("MAILPLAT_DATA"))
    try:
        reply = channel.call(channel.socket_path(root), {"cmd": "status"}, timeout=10)
    except (channel.ControlUnavailable, OSError):
        if as_json:
            emit_json({"ok": False, "error": f"no server is running on {root}"})
            raise typer.Exit(1) from None
        fail(f"no server is running on data root {root} (start one with `mailplat serve`)")
    if as_json:
        emit_json(reply)
        return
    _render(reply)


def _render(s: dict[str, Any]) -> None:
    out.print(f"[bold]mailplat[/] pid {s['pid']}, site [bold]{s['site']}[/] ({s['site_dir']})")
    out.print(f"  data root     {s['data_root']}", highlight=False)
    gen = s.get("generation")
    if gen is None:
        out.print("  generation    none applied yet (serving the working tree)")
    else:
        out.print(
            f"  generation    {gen} ({str(s['digest'])[:12]}), applied {s['applied_at']} "
            f"by {s['applied_by']}",
            highlight=False,
        )
    out.print(f"  uptime        {s['uptime_seconds']} s")
    out.print("  listeners     " + ", ".join(s["listeners"]), highlight=False)
    counts = dict(s["queues"])
    damaged = int(counts.pop("quarantine", 0))
    queues = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    out.print(f"  queues        {queues}", highlight=False)
    if damaged:
        out.print(
            f"  [yellow]quarantine[/]    {damaged} damaged spool file(s) set aside: "
            "`mailplat queue quarantine` lists them"
        )
    else:
        out.print("  quarantine    none")
    rejected = s.get("last_rejected")
    if rejected:
        out.print("  [red]last refused change[/] ", end="")
        out.print(f"{rejected['at']} by {rejected['by']}: {rejected['error']}", markup=False)
        for line in error_lines(rejected.get("errors", []), indent="    "):
            out.print(line, markup=False, highlight=False)
    else:
        out.print("  last refused  none")


def register(app: typer.Typer) -> None:
    app.command("status")(status)
