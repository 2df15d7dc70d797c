"""`mailplat queue ...` and `mailplat badmail ...`: the outbound queue of a running server.

Every command talks to the server through its control socket, so it sees and
changes exactly what the server delivers from. Tables for people, `--json`
for scripts. Exit codes: 0 done, 1 error or no server, 3 no such message,
4 the message is being delivered right now (try again).
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mailplat.cli.console import JsonOpt, emit_json, err, fail, ok, out
from mailplat.config.load import data_root_of_dir
from mailplat.control import channel

queue_app = typer.Typer(help="Outbound queue of the running server.", no_args_is_help=True)
badmail_app = typer.Typer(
    help="Mail given up on (badmail) in the running server.", no_args_is_help=True
)

SiteOpt = Annotated[
    Path | None, typer.Option("--site", help="Site folder (to find its data root).")
]
DataOpt = Annotated[str | None, typer.Option("--data", help="Data root of the running server.")]
IdArg = Annotated[str, typer.Argument(help="Queue id, as `list` shows it.")]


def _root(site: Path | None, data: str | None) -> Path:
    if data:
        return Path(data)
    if os.environ.get("MAILPLAT_DATA"):
        return Path(os.environ["MAILPLAT_DATA"])
    if site is None:
        fail("say which server: --data DIR, --site SITE or MAILPLAT_DATA")
    if not site.is_dir():
        fail(f"site folder {site} does not exist")
    # The data root only: a broken working tree must not lock the admin out of the queue.
    return data_root_of_dir(site, None, None)


def _call(
    site: Path | None, data: str | None, request: dict[str, Any], as_json: bool
) -> dict[str, Any]:
    root = _root(site, data)
    try:
        reply = channel.call(channel.socket_path(root), request, timeout=60)
    except (channel.ControlUnavailable, OSError):
        if as_json:
            emit_json({"ok": False, "error": f"no server is running on {root}"})
            raise typer.Exit(1) from None
        fail(f"no server is running on data root {root}")
    if not reply.get("ok"):
        code = int(reply.get("exit_code", 1))
        if as_json:
            emit_json(reply)
        else:
            err.print(f"[red]error:[/] {reply.get('error')}")
        raise typer.Exit(code)
    return reply


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def _table(entries: list[dict[str, Any]], now: float, badmail: bool) -> None:
    if not entries:
        out.print("[green]empty[/]")
        return
    table = Table(show_lines=False)
    table.add_column("id", no_wrap=True)  # copied into the next command: never folded
    for column in ("from", "to", "size", "age", "tries"):
        table.add_column(column, overflow="fold")
    table.add_column("reason" if badmail else "next try")
    table.add_column("last error", overflow="fold")
    for e in entries:
        nxt = "now" if e["next_try"] <= now else f"in {_age(e['next_try'] - now)}"
        if e["busy"]:
            nxt = "sending"
        table.add_row(
            e["id"],
            e["sender"] or "<>",
            ", ".join(e["recipients"]),
            str(e["size"]),
            _age(e["age_seconds"]),
            str(e["attempts"]),
            e["reason"] if badmail else nxt,
            e["last_error"],
        )
    # Piped or logged output has no width; do not fold ids and addresses into 80 columns.
    out.print(table, width=None if out.is_terminal else 200)
    out.print(f"{len(entries)} message(s)")


def _list(queue: str, site: Path | None, data: str | None, as_json: bool) -> None:
    reply = _call(site, data, {"cmd": "queue-list", "queue": queue}, as_json)
    if as_json:
        emit_json(reply["entries"])
        return
    _table(reply["entries"], reply["now"], badmail=queue == "badmail")


def _show(queue: str, rid: str, site: Path | None, data: str | None, as_json: bool) -> None:
    reply = _call(site, data, {"cmd": "queue-show", "queue": queue, "id": rid}, as_json)
    headers = base64.b64decode(reply["headers"]).decode("utf-8", "replace")
    if as_json:
        emit_json({**reply, "headers": headers})
        return
    e = reply["entry"]
    for key in ("id", "queue", "trace_id", "sender", "size", "attempts", "last_error", "reason"):
        out.print(f"{key:<11} {e[key]}", highlight=False)
    out.print(f"{'recipients':<11} {', '.join(e['recipients'])}", highlight=False)
    out.print(
        f"{'received':<11} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e['received_at']))}"
    )
    out.print(
        f"{'client':<11} {reply['client_ip']} (helo {reply['helo']!r}, auth {reply['auth'] or '-'})",
        highlight=False,
    )
    out.print(f"{'meta':<11} {json.dumps(reply['meta'])}", highlight=False)
    out.print("\n" + headers.rstrip(), highlight=False, markup=False)


@queue_app.command("list")
def queue_list(site: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Messages waiting for outbound delivery: sender, recipients, age, tries, next try, last error."""
    _list("smtp", site, data, as_json)


@queue_app.command("show")
def queue_show(
    rid: IdArg, site: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """One queued message: envelope, history and headers."""
    _show("smtp", rid, site, data, as_json)


@queue_app.command("retry")
def queue_retry(
    ids: Annotated[list[str] | None, typer.Argument(help="Queue ids; none with --all.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every queued message now.")] = False,
    site: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Try queued messages again now instead of waiting for their next retry."""
    if not ids and not all_:
        fail("name the messages to retry, or use --all")
    request: dict[str, Any] = {"cmd": "queue-retry", "all": all_, "ids": ids or []}
    reply = _call(site, data, request, as_json)
    if as_json:
        emit_json(reply)
        return
    ok(f"{len(reply['retried'])} message(s) will be tried now")


@queue_app.command("delete")
def queue_delete(
    rid: IdArg, site: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Stop delivering a message; it moves to badmail (nothing is lost)."""
    reply = _call(site, data, {"cmd": "queue-delete", "queue": "smtp", "id": rid}, as_json)
    if as_json:
        emit_json(reply)
        return
    ok(f"{rid} moved to badmail (`mailplat badmail delete {rid}` removes it for good)")


@queue_app.command("bounce")
def queue_bounce(
    rid: IdArg, site: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Give up on a message now and send its sender a non-delivery report."""
    reply = _call(site, data, {"cmd": "queue-bounce", "id": rid}, as_json)
    if as_json:
        emit_json(reply)
        return
    if reply["result"] == "bounced":
        ok(f"{rid} returned to its sender")
    else:
        ok(f"{rid} moved to badmail (no report may be sent for it)")


@badmail_app.command("list")
def badmail_list(site: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Messages given up on, with the reason."""
    _list("badmail", site, data, as_json)


@badmail_app.command("show")
def badmail_show(
    rid: IdArg, site: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """One badmail message: envelope, reason and headers."""
    _show("badmail", rid, site, data, as_json)


@badmail_app.command("resend")
def badmail_resend(
    rid: IdArg, site: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Give a badmail message another go (outbound again, or routed again from the start)."""
    reply = _call(site, data, {"cmd": "badmail-resend", "id": rid}, as_json)
    if as_json:
        emit_json(reply)
        return
    ok(f"{rid} sent back to {reply['result']}")


@badmail_app.command("delete")
def badmail_delete(
    rid: IdArg, site: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Remove a badmail message for good."""
    reply = _call(site, data, {"cmd": "queue-delete", "queue": "badmail", "id": rid}, as_json)
    if as_json:
        emit_json(reply)
        return
    ok(f"{rid} deleted")


def register(app: typer.Typer) -> None:
    app.add_typer(queue_app, name="queue")
    app.add_typer(badmail_app, name="badmail")
