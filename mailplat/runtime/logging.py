"""Structured logging: one line per event, as text on the terminal and JSON lines on disk.

Every event line carries key=value pairs (id=, peer=, mailbox=) so a trace id
can be followed through every stage with `grep id=<ID>`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path
from typing import Any

_CONVERSION = re.compile(r"%(?:%|[#0\- +]*(?:\d+|\*)?(?:\.(?:\d+|\*))?[diouxXeEfFgGcrsa])")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(\S+)")
_EVENT_WORD = re.compile(r"[A-Za-z0-9_.-]+:?")
_RESERVED = frozenset({"ts", "level", "logger", "event", "msg", "exc"})
_TEMPLATE_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class _Field:
    """One `key=<value template>` of a log template and the arguments it takes."""

    key: str
    spec: str  # the value template, e.g. "%s" or "%.0fs"
    first: int  # index of its first argument
    count: int  # how many arguments it takes
    kind: str  # "str" (%s), "int" (%d), "float" (one float conversion alone), else "text"


@dataclass(frozen=True, slots=True)
class _Template:
    """A log template taken apart once: event words, keyed fields, the rest as text."""

    event: str
    event_args: tuple[int, ...]
    fields: tuple[_Field, ...]
    rest: str  # the text that is neither event nor field ("" when none)
    rest_args: tuple[int, ...]
    nargs: int


def _conversions(text: str) -> int:
    return sum(1 for m in _CONVERSION.finditer(text) if m.group() != "%%")


def _kind(spec: str) -> str:
    if spec == "%s":
        return "str"
    if spec in ("%d", "%i"):
        return "int"
    m = _CONVERSION.fullmatch(spec)
    return "float" if m is not None and spec[-1] in "eEfFgG" else "text"


def parse_template(template: str) -> _Template | None:
    """Split `"smtp accepted id=%s peer=%s (note)"` into event, fields and the rest.

    The event is the leading plain words (a bare `%s` among them only when a
    field follows, as in `outbound %s id=%s`; a word ending in `:` ends it).
    Every `key=VALUE` whose VALUE holds a %-conversion becomes a field paired
    with its argument(s); everything else stays text. None when the template
    uses `*` widths or mapping keys, which only the plain message handles.
    """
    if "%(" in template or "*" in "".join(m.group() for m in _CONVERSION.finditer(template)):
        return None
    tokens = template.split()
    has_field = [bool((m := _KEY.fullmatch(t)) and _conversions(m.group(2))) for t in tokens]
    event_words: list[str] = []
    event_args: list[int] = []
    index = 0  # next argument
    pos = 0
    while pos < len(tokens) and not has_field[pos]:
        token = tokens[pos]
        bare = token in ("%s", "%d") and any(has_field[pos + 1 :])
        if not (bare or ("%" not in token and _EVENT_WORD.fullmatch(token))):
            break
        if bare:
            event_args.append(index)
            index += 1
        pos += 1
        if token.endswith(":"):
            event_words.append(token[:-1])
            break
        event_words.append(token)
    fields: list[_Field] = []
    rest_words: list[str] = []
    rest_args: list[int] = []
    seen: set[str] = set()
    for token, keyed in zip(tokens[pos:], has_field[pos:], strict=True):
        count = _conversions(token)
        if keyed:
            m = _KEY.fullmatch(token)
            assert m is not None
            key, spec = m.group(1), m.group(2).rstrip(";,")
            if key in _RESERVED or key in seen:
                key += "_"
            seen.add(key)
            fields.append(_Field(key, spec, index, count, _kind(spec)))
        else:
            rest_words.append(token)
            rest_args.extend(range(index, index + count))
        index += count
    rest = " ".join(rest_words).lstrip(";,: ")
    if index and not rest_args:
        rest = rest.replace("%%", "%")  # what getMessage would have made of it
    return _Template(
        " ".join(event_words),
        tuple(event_args),
        tuple(fields),
        rest,
        tuple(rest_args),
        index,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per record: {"ts", "level", "logger", "event", <fields>, "msg"?}.

    The fields come from the call site's template (`log.info("smtp accepted
    id=%s peer=%s", ...)` gives {"event": "smtp accepted", "id": ..., "peer":
    ...}), so every call site stays as it is and the text logs read as
    before. Each template is taken apart once and cached; per record that
    leaves one small %-format per field, about what getMessage() costs.
    Text that is not a field is kept in "msg"; a record whose template does
    not fit (wrong argument count, a bad conversion) is logged whole in "msg".
    """

    def __init__(self) -> None:
        super().__init__()
        self._templates: dict[str, _Template | None] = {}
        self._second = -1
        self._stamp = ""

    def _template(self, template: str) -> _Template | None:
        try:
            return self._templates[template]
        except KeyError:
            parsed = parse_template(template)
            # Templates are code constants; one built at run time (an f-string)
            # would make the cache grow without end, so past the bound it stops.
            if len(self._templates) < _TEMPLATE_CACHE_MAX:
                self._templates[template] = parsed
            return parsed

    def _ts(self, created: float, msecs: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        return f"{self._stamp}.{int(msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._ts(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        args = record.args
        tpl = None
        if isinstance(record.msg, str) and isinstance(args, tuple):
            tpl = self._template(record.msg)
        if tpl is None or tpl.nargs != len(args or ()):
            entry["msg"] = record.getMessage()
        else:
            assert isinstance(args, tuple)
            try:
                _fill(entry, tpl, args)
            except (TypeError, ValueError):
                entry = {k: entry[k] for k in ("ts", "level", "logger")}
                entry["msg"] = record.getMessage()
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _fill(entry: dict[str, Any], tpl: _Template, args: tuple[Any, ...]) -> None:
    """The event, fields and rest of one record into entry (TypeError on a bad argument)."""
    if tpl.event_args:
        entry["event"] = tpl.event % tuple(args[i] for i in tpl.event_args)
    elif tpl.event:
        entry["event"] = tpl.event
    for f in tpl.fields:
        # Strings and numbers go in as JSON strings and numbers; the rest as its text.
        if f.kind == "str":
            value = args[f.first]
            entry[f.key] = value if type(value) is str else str(value)
        elif f.kind == "int":
            value = args[f.first]
            entry[f.key] = value if type(value) is int else int(f.spec % (value,))
        elif f.kind == "float":
            entry[f.key] = float(f.spec % (args[f.first],))
        else:
            entry[f.key] = f.spec % args[f.first : f.first + f.count]
    if tpl.rest_args:
        entry["msg"] = tpl.rest % tuple(args[i] for i in tpl.rest_args)
    elif tpl.rest:
        entry["msg"] = tpl.rest


ACTIVITY_EVENTS = (
    "smtp accepted",
    "mta routed",
    "mta bounce",
    "delivery ok",
    "delivery bounce",
    "delivery autoreply",
    "delivery over-quota",
    "delivery possible-duplicate",
    "outbound delivered",
    "outbound deferred",
    "outbound failed",
    "outbound retry",
    "outbound bounce",
    "outbound badmail",
    "outbound delay-notice",
    "outbound possible-duplicate",
    "spool quarantined",
    "mta quarantine-notice",
    "queue bounce",
    "pop3 login",
    "reload applied",
    "reload refused",
)
W3C_FIELDS = "date time c-ip s-ip s-port cs-method cs-uri-query sc-status"


def _activity(record: logging.LogRecord) -> bool:
    return isinstance(record.msg, str) and record.msg.startswith(ACTIVITY_EVENTS)


class W3CFormatter(logging.Formatter):
    """`date time <message>` in UTC, the W3C extended log's first two fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        return f"{stamp} {record.getMessage()}"


def _file_handler(path: Path, rollover: str) -> logging.Handler:
    if rollover == "never":
        return logging.FileHandler(path, encoding="utf-8")
    when = "midnight" if rollover == "daily" else "H"
    return TimedRotatingFileHandler(path, when=when, utc=True, encoding="utf-8")


def _w3c_header() -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    return f"#Software: mailplat\n#Version: 1.0\n#Date: {stamp}\n#Fields: {W3C_FIELDS}\n"


class _W3CFile(logging.FileHandler):
    """A log file that starts with the W3C header."""

    def _open(self) -> Any:
        stream = super()._open()
        if stream.tell() == 0:
            stream.write(_w3c_header())
        return stream


class _W3CRotating(TimedRotatingFileHandler):
    """A rolling log file; every new file starts with the W3C header."""

    def _open(self) -> Any:
        stream = super()._open()
        if stream.tell() == 0:
            stream.write(_w3c_header())
        return stream


def setup(
    log_dir: Path | None,
    *,
    debug: bool = False,
    json_file: bool = True,
    w3c: bool = False,
    activity: bool = False,
    rollover: str = "daily",
) -> None:
    """Log to stderr (text) and, under log_dir, to the files the site asks for.

    mailplat.jsonl: every event as JSON; activity.log: one line per message
    event (accepted, routed, delivered, bounced, ...); smtp-w3c.log: every
    SMTP command and reply status in the W3C extended format. Files roll over
    daily, hourly or never.
    """
    # Several log lines per message: skip what no format here shows (caller
    # frame, thread and process names), as the logging docs' optimisation
    # section suggests; it was about a tenth of the logging cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger("mailplat")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    w3c_log = logging.getLogger("mailplat.w3c")
    w3c_log.propagate = False
    for logger in (root, w3c_log):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root.addHandler(console)
    # Disabled unless asked for, so the SMTP hot path skips it with one check.
    w3c_log.setLevel(logging.INFO if (w3c and log_dir is not None) else logging.CRITICAL + 1)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        if json_file:
            handler = _file_handler(log_dir / "mailplat.jsonl", rollover)
            handler.setFormatter(JsonFormatter())
            root.addHandler(handler)
        if activity:
            handler = _file_handler(log_dir / "activity.log", rollover)
            handler.addFilter(_activity)
            handler.setFormatter(
                logging.Formatter("%(asctime)s\t%(name)s\t%(message)s", "%Y-%m-%d %H:%M:%S")
            )
            root.addHandler(handler)
        if w3c:
            path = log_dir / "smtp-w3c.log"
            w3c_handler: logging.Handler
            if rollover == "never":
                w3c_handler = _W3CFile(path, encoding="utf-8")
            else:
                when = "midnight" if rollover == "daily" else "H"
                w3c_handler = _W3CRotating(path, when=when, utc=True, encoding="utf-8")
            w3c_handler.setFormatter(W3CFormatter())
            w3c_log.addHandler(w3c_handler)


# -- reading the JSON log back: `mailplat trace` ---------------------------------------

JSON_LOG = "mailplat.jsonl"
_LINK_KEYS = ("id", "parent", "record")
_OLD_ID = re.compile(r"\b(?:id|of)=([0-9A-Z]{20})\b")


def log_files(log_dir: Path) -> list[Path]:
    """mailplat.jsonl and its rolled-over files, oldest first."""
    rolled = sorted(p for p in log_dir.glob(JSON_LOG + ".*") if p.is_file())
    current = log_dir / JSON_LOG
    return [*rolled, *([current] if current.is_file() else [])]


def _events(files: list[Path], needles: set[str]) -> list[dict[str, Any]]:
    """Every JSON line of the files that mentions one of the needles (cheap substring test first)."""
    found: list[dict[str, Any]] = []
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not any(n in line for n in needles):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash mid-write
                if isinstance(event, dict):
                    found.append(event)
    return found


def _ids_of(event: dict[str, Any]) -> tuple[str, str]:
    """(id, parent) of one event; lines from before the JSON fields only have "msg"."""
    msg_id = str(event.get("id") or "")
    if not msg_id and "record" in event:
        msg_id = str(event["record"]).rsplit(".", 1)[0]
    if not msg_id and "event" not in event:
        m = _OLD_ID.search(str(event.get("msg", "")))
        msg_id = m.group(1) if m else ""
    return msg_id, str(event.get("parent") or "")


def trace(log_dir: Path, msg_id: str) -> list[dict[str, Any]]:
    """Every logged event of a message and of the messages it caused, in time order.

    A bounce, delay notice, auto-reply or resend is logged with `parent=` the
    id of the message that caused it, so the family is followed through its
    children (and theirs). `ID.N` (a queue record) means message ID.
    """
    wanted = {msg_id.strip().rsplit(".", 1)[0] if "." in msg_id else msg_id.strip()}
    files = log_files(log_dir)
    family = set(wanted)
    while True:
        events = _events(files, family)
        grown = set(family)
        for event in events:
            own, parent = _ids_of(event)
            if parent in grown and own:
                grown.add(own)
        if grown == family:
            break
        family = grown
    out = [e for e in events if _ids_of(e)[0] in family or _ids_of(e)[1] in family]
    out.sort(key=lambda e: str(e.get("ts", "")))  # ISO UTC stamps sort as time; stable
    return out
