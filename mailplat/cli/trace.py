"""`mailplat trace SITE ID`: one message's whole life, read back from the JSON log.

Input: the site (to find its data root and log directory), or only the data
root (--data or MAILPLAT_DATA: its logs/, the default logging.directory), and
a message id as the SMTP reply, the Received header or `queue list` show it
(`ID` or `ID.N`).
Output: every line of mailplat.jsonl (and its rolled-over files) about that
message, and about the bounces, notices and auto-replies it caused (they are
logged with `parent=` its id), oldest first: time, event and the key fields;
`--json` prints the events as they were logged. Exit 0 found, 1 no log to
read, 3 nothing logged for that id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from mailplat.cli.console import DataOpt, JsonOpt, SiteOpt, emit_json, fail, out, split_site
from mailplat.config.load import data_root_of_dir
from mailplat.config.yamlread import read_yaml_text
from mailplat.runtime.logging import JSON_LOG, log_files, trace

EXIT_NOT_FOUND = 3
_HIDDEN = ("ts", "level", "logger", "event", "msg", "exc")


DEFAULT_LOG_DIR = "logs"  # logging.directory's default, relative to the data root


def _log_dir(site: Path, root: Path) -> Path:
    """logging.directory of site.yaml (relative to the data root), read without loading the site."""
    directory = DEFAULT_LOG_DIR
    try:
        doc = read_yaml_text((site / "site.yaml").read_text(encoding="utf-8"))
        logging = doc.data.get("logging") if isinstance(doc.data, dict) else None
        value = logging.get("directory") if isinstance(logging, dict) else None
        if isinstance(value, str) and value:
            directory = value
    except (OSError, ValueError, AttributeError):
        pass  # a broken site.yaml still has its logs in the default place
    return root / directory


def _line(event: dict[str, Any], asked: str) -> str:
    stamp = str(event.get("ts", "")).replace("T", " ").rstrip("Z")
    level = str(event.get("level", "info"))
    name = str(event.get("event") or "")
    fields = [
        f"{k}={v}" for k, v in event.items() if k not in _HIDDEN and not (k == "id" and v == asked)
    ]
    if event.get("msg"):
        fields.append(str(event["msg"]))
    mark = "" if level == "info" else f"{level.upper()} "
    return f"{stamp}  {mark}{name:<24} {' '.join(fields)}".rstrip()


def trace_command(
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="[SITE] ID",
            help="Message id (from the SMTP reply, Received or `queue list`), "
            "after the site folder (or give the site as --site).",
            show_default=False,
        ),
    ],
    site_opt: SiteOpt = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a message's whole life from the logs: accepted, routed, delivered, bounced...

    Bounces, delay notices and auto-replies it caused are followed too. With
    --data DIR (or MAILPLAT_DATA) and no SITE, the log is read from DIR/logs,
    the default logging.directory; name the site when it logs elsewhere.
    Exit 0 found, 1 no log to read, 3 nothing logged for ID.
    """
    site, rest = split_site(args, site_opt)
    data = data or os.environ.get("MAILPLAT_DATA") or None
    if site is None and data is None:
        fail(
            "which log? name the site first: mailplat trace SITE ID (or --site SITE), "
            "or the server's data root: --data DIR"
        )
    if site is not None and not site.is_dir():
        fail(f"site folder {site} does not exist")
    if len(rest) != 1:
        fail("give one message id, e.g. from `250 2.0.0 OK queued as ID`")
    wanted = rest[0].strip()
    if not wanted:
        fail("give the id of a message, e.g. from `250 2.0.0 OK queued as ID`")
    if site is not None:
        log_dir = _log_dir(site, data_root_of_dir(site, data, None))
    else:  # only the data root is known: its logs are where they are by default
        log_dir = Path(str(data)).resolve() / DEFAULT_LOG_DIR
    if not log_files(log_dir):
        elsewhere = (
            " (or name the site, if its logging.directory is not logs)" if site is None else ""
        )
        fail(
            f"no {JSON_LOG} in {log_dir}: the server logs JSON lines there while "
            f"logging.json is on (the default){elsewhere}"
        )
    events = trace(log_dir, wanted)
    if as_json:
        emit_json(events)
    if not events:
        if not as_json:
            fail(f"nothing logged for {wanted} in {log_dir}", EXIT_NOT_FOUND)
        raise typer.Exit(EXIT_NOT_FOUND)
    if as_json:
        return
    asked = wanted.rsplit(".", 1)[0]
    for event in events:
        out.print(_line(event, asked), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("trace")(trace_command)
