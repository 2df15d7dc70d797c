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

from mailplat.cli.console import (
    DataOpt,
    JsonOpt,
    SiteArg,
    SiteOpt,
    emit_json,
    err,
    fail,
    ok,
    optional_site,
    out,
    pass_down,
    split_site,
)
from mailplat.config.load import data_root_of_dir
from mailplat.control import channel

queue_app = typer.Typer(
    help="Queues of the running server: outbound (smtp), list, postoffice, quarantine.",
    no_args_is_help=True,
)
badmail_app = typer.Typer(
    help="Mail given up on (badmail) in the running server.", no_args_is_help=True
)


@queue_app.callback()
def queue_group(
    ctx: typer.Context,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queues of the running server: outbound (smtp), list, postoffice, quarantine.

    --site, --data and --json work here too (`mailplat queue --data DIR list`).
    """
    pass_down(ctx, site_opt=site_opt, data=data, as_json=as_json)


@badmail_app.callback()
def badmail_group(
    ctx: typer.Context,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mail given up on (badmail) in the running server.

    --site, --data and --json work here too (`mailplat badmail --data DIR list`).
    """
    pass_down(ctx, site_opt=site_opt, data=data, as_json=as_json)


IdArgs = Annotated[
    list[str],
    typer.Argument(
        metavar="[SITE] ID",
        help="Queue id, as `list` shows it; the site folder may come first (or use --site).",
        show_default=False,
    ),
]


def _one_id(args: list[str], opt: Path | None) -> tuple[Path | None, str]:
    """`[SITE] ID` -> (site, id)."""
    site, rest = split_site(args, opt)
    if len(rest) != 1:
        fail("give one message id (and optionally the site folder first)")
    return site, rest[0]


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


def _plain(header: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell, two spaces apart, one line per row (pipes, logs)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        out.print("  ".join(cells).rstrip(), highlight=False, markup=False, soft_wrap=True)


def _rows(header: list[str], rows: list[list[str]], fold: frozenset[str] = frozenset()) -> None:
    """A table on a terminal; full-width plain rows in a pipe, never folded to 80 columns."""
    if not out.is_terminal:
        _plain(header, rows)
        return
    table = Table(show_lines=False)
    for name in header:
        # Ids are copied into the next command: never folded; long text folds,
        # but keeps a readable width.
        if name in fold:
            table.add_column(name, overflow="fold", min_width=8)
        else:
            table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _table(entries: list[dict[str, Any]], now: float, badmail: bool, queues: bool) -> None:
    if not entries:
        out.print("[green]empty[/]")
        return
    header = ["id", *(["queue"] if queues else []), "from", "to", "size", "age", "tries"]
    header += ["reason" if badmail else "next try", "last error"]
    rows = []
    for e in entries:
        nxt = "now" if e["next_try"] <= now else f"in {_age(e['next_try'] - now)}"
        if e["busy"]:
            nxt = "sending"
        rows.append(
            [
                e["id"],
                *([e["queue"]] if queues else []),
                e["sender"] or "<>",
                ", ".join(e["recipients"]),
                str(e["size"]),
                _age(e["age_seconds"]),
                str(e["attempts"]),
                e["reason"] if badmail else nxt,
                e["last_error"],
            ]
        )
    _rows(header, rows, fold=frozenset({"from", "to", "last error", "reason"}))
    out.print(f"{len(entries)} message(s)")


def _list(queue: str, site: Path | None, data: str | None, as_json: bool) -> None:
    reply = _call(site, data, {"cmd": "queue-list", "queue": queue}, as_json)
    if as_json:
        emit_json(reply["entries"])
        return
    _table(reply["entries"], reply["now"], badmail=queue == "badmail", queues=queue == "all")


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _history(attempts: list[dict[str, Any]]) -> None:
    if not attempts:
        out.print("history     no delivery attempt yet", highlight=False)
        return
    out.print("history", highlight=False)
    rows = [
        [
            str(a["n"]),
            _when(float(a["at"])),
            r.get("result", ""),
            r.get("host") or "-",
            r.get("reply", ""),
            ", ".join(r.get("rcpts", [])),
        ]
        for a in attempts
        for r in a.get("results", [])
    ]
    _rows(["#", "time", "result", "host", "reply", "to"], rows, fold=frozenset({"reply", "to"}))


def _show(queue: str | None, rid: str, site: Path | None, data: str | None, as_json: bool) -> None:
    request: dict[str, Any] = {"cmd": "queue-show", "id": rid}
    if queue:
        request["queue"] = queue
    reply = _call(site, data, request, as_json)
    headers = base64.b64decode(reply["headers"]).decode("utf-8", "replace")
    if as_json:
        emit_json({**reply, "headers": headers})
        return
    e = reply["entry"]
    for key in ("id", "queue", "trace_id", "sender", "size", "attempts", "last_error", "reason"):
        out.print(f"{key:<11} {e[key]}", highlight=False, markup=False)
    out.print(f"{'recipients':<11} {', '.join(e['recipients'])}", highlight=False, markup=False)
    out.print(f"{'received':<11} {_when(e['received_at'])}")
    out.print(
        f"{'client':<11} {reply['client_ip']} (helo {reply['helo']!r}, auth {reply['auth'] or '-'})",
        highlight=False,
        markup=False,
    )
    out.print(f"{'meta':<11} {json.dumps(reply['meta'])}", highlight=False, markup=False)
    _history(reply.get("history", []))
    out.print("\n" + headers.rstrip(), highlight=False, markup=False)


QueueOpt = Annotated[
    str | None,
    typer.Option(
        "--queue",
        metavar="QUEUE",
        help="smtp (outbound, the default for list), list (held for the list server), "
        "postoffice (local delivery), or all.",
    ),
]


@queue_app.command("list")
def queue_list(
    site: SiteArg = None,
    queue: QueueOpt = None,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Waiting messages: sender, recipients, age, tries, next try, last error.

    The outbound (smtp) queue unless --queue names another, or all of them.
    """
    _list(_queue_name(queue, default="smtp"), optional_site(site, site_opt), data, as_json)


def _queue_name(queue: str | None, default: str) -> str:
    choice = (queue or default).lower()
    if choice not in ("smtp", "list", "postoffice", "all"):
        fail(f"no queue {queue!r}: choose smtp, list, postoffice or all")
    return choice


@queue_app.command("show")
def queue_show(
    args: IdArgs,
    queue: QueueOpt = None,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One waiting message: envelope, every delivery attempt (time, host, reply), headers.

    Looked for in every queue unless --queue names one.
    """
    site, rid = _one_id(args, site_opt)
    _show(None if queue is None else _queue_name(queue, "all"), rid, site, data, as_json)


@queue_app.command("retry")
def queue_retry(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[SITE] [ID]...",
            help="Queue ids (none with --all); the site folder may come first.",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every queued message now.")] = False,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Try queued messages again now instead of waiting for their next retry."""
    site, ids = split_site(args or [], site_opt)
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
    args: IdArgs, site_opt: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Stop delivering a message; it moves to badmail (nothing is lost)."""
    site, rid = _one_id(args, site_opt)
    reply = _call(site, data, {"cmd": "queue-delete", "queue": "smtp", "id": rid}, as_json)
    if as_json:
        emit_json(reply)
        return
    ok(f"{rid} moved to badmail (`mailplat badmail delete {rid}` removes it for good)")


@queue_app.command("bounce")
def queue_bounce(
    args: IdArgs, site_opt: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Give up on a message now and send its sender a non-delivery report."""
    site, rid = _one_id(args, site_opt)
    reply = _call(site, data, {"cmd": "queue-bounce", "id": rid}, as_json)
    if as_json:
        emit_json(reply)
        return
    if reply["result"] == "bounced":
        ok(f"{rid} returned to its sender")
    else:
        ok(f"{rid} moved to badmail (no report may be sent for it)")


@badmail_app.command("list")
def badmail_list(
    site: SiteArg = None, site_opt: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Messages given up on, with the reason."""
    _list("badmail", optional_site(site, site_opt), data, as_json)


@badmail_app.command("show")
def badmail_show(
    args: IdArgs, site_opt: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """One badmail message: envelope, reason and headers."""
    site, rid = _one_id(args, site_opt)
    _show("badmail", rid, site, data, as_json)


@badmail_app.command("resend")
def badmail_resend(
    args: IdArgs, site_opt: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Give a badmail message another go (outbound again, or routed again from the start)."""
    site, rid = _one_id(args, site_opt)
    reply = _call(site, data, {"cmd": "badmail-resend", "id": rid}, as_json)
    if as_json:
        emit_json(reply)
        return
    ok(f"{rid} sent back to {reply['result']}")


@badmail_app.command("delete")
def badmail_delete(
    args: IdArgs, site_opt: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Remove a badmail message for good."""
    site, rid = _one_id(args, site_opt)
    reply = _call(site, data, {"cmd": "queue-delete", "queue": "badmail", "id": rid}, as_json)
    if as_json:
        emit_json(reply)
        return
    ok(f"{rid} deleted")


quarantine_app = typer.Typer(
    help="Damaged spool files set aside (never delivered, never deleted by the server).",
    invoke_without_command=True,
)


def _quarantine_rows(entries: list[dict[str, Any]]) -> None:
    if not entries:
        out.print("[green]empty[/]")
        return
    rows = [
        [
            str(e.get("name", "")),
            str(e.get("id", "")),
            str(e.get("kind", e.get("source", ""))),
            _when(float(e.get("at", 0.0))),
            str(e.get("from", "") or ("<>" if "from" in e else "?")),
            ", ".join(e.get("rcpts", [])) or "?",
            _notified(e),
            str(e.get("why", "")),
        ]
        for e in entries
    ]
    header = ["name", "id", "kind", "quarantined", "from", "to", "sender told", "why"]
    _rows(header, rows, fold=frozenset({"to", "why"}))
    out.print(f"{len(entries)} file(s) in quarantine")


def _notified(entry: dict[str, Any]) -> str:
    if entry.get("notify"):
        return "pending"
    told = entry.get("notified")
    if told and told != "-":
        return f"yes ({told})"
    return "no (envelope unreadable)" if "from" not in entry else "no (null sender or no_ndr)"


@quarantine_app.callback()
def queue_quarantine(
    ctx: typer.Context,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List damaged spool files set aside: which message, why, whether the sender was told.

    `mailplat queue quarantine list [SITE]` lists too; `... show NAME|ID` shows one
    entry and the start of its file. Options given here reach those too.
    """
    if ctx.invoked_subcommand is not None:
        pass_down(ctx, site_opt=site_opt, data=data, as_json=as_json)
        return
    _quarantine_list(site_opt, data, as_json)


def _quarantine_list(site: Path | None, data: str | None, as_json: bool) -> None:
    reply = _call(site, data, {"cmd": "queue-quarantine"}, as_json)
    if as_json:
        emit_json(reply["entries"])
        return
    _quarantine_rows(reply["entries"])


@quarantine_app.command("list")
def queue_quarantine_list(
    site: SiteArg = None, site_opt: SiteOpt = None, data: DataOpt = None, as_json: JsonOpt = False
) -> None:
    """Damaged spool files set aside: which message, why, whether the sender was told."""
    _quarantine_list(optional_site(site, site_opt), data, as_json)


@quarantine_app.command("show")
def queue_quarantine_show(
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="[SITE] NAME",
            help="Entry name (as listed) or message id; the site folder may come first.",
            show_default=False,
        ),
    ],
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One quarantined entry (every file of a message, given its id): facts and file start."""
    site, name = _one_id(args, site_opt)
    reply = _call(site, data, {"cmd": "queue-quarantine-show", "id": name}, as_json)
    entries = reply["entries"]
    for entry in entries:
        raw = base64.b64decode(entry.pop("content"))
        entry["content"] = raw.decode("utf-8", "replace")
    if as_json:
        emit_json(entries)
        return
    for entry in entries:
        text = entry.pop("content")
        for key in ("name", "id", "kind", "queue", "record", "why", "from"):
            if key in entry:
                out.print(f"{key:<12} {entry[key]}", highlight=False, markup=False)
        out.print(f"{'to':<12} {', '.join(entry.get('rcpts', [])) or '?'}", markup=False)
        out.print(f"{'quarantined':<12} {_when(float(entry.get('at', 0.0)))}")
        out.print(f"{'sender told':<12} {_notified(entry)}", markup=False)
        # The file as it is on disk, up to the end of the message's headers.
        head = text.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
        out.print("\n" + head.rstrip() + "\n", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    queue_app.add_typer(quarantine_app, name="quarantine")
    app.add_typer(queue_app, name="queue")
    app.add_typer(badmail_app, name="badmail")
