"""Structured logging: one line per event, as text on the terminal and JSON lines on disk.

Every event line carries key=value pairs (id=, peer=, mailbox=) so a trace id
can be followed through every stage with `grep id=<ID>`.

Cost: about ten records per message, so a record must be cheap where it is
made. The call site (`log.info(...)`) builds the LogRecord and hands it to a
queue, nothing more: no lock, no formatting, no write. A writer thread takes
the queue every FLUSH_SECONDS (or as soon as FLUSH_RECORDS are waiting),
formats each record once per file (timestamps once per second, the message
text once for all text files) and writes each file with one write and one
flush per batch. Formatting there costs the event loop nothing while it waits
on the network or the disk, and the writes never block it.

Guarantees:
- Nothing is lost on a clean stop: closing the handlers (setup() again,
  logging.shutdown(), which runs at interpreter exit) writes every record.
- A crash (kill -9, power loss) loses at most the last FLUSH_SECONDS of
  records, and a line cut by a crash is skipped by `trace`. Mail is never at
  stake: the spool's fsync, not the log, is what a 250 promises.
- A record reads as it was when logged: arguments other than strings,
  numbers, exceptions and paths are turned into their text at the call.
- Lines of one file keep their order; stderr gets the same text as before.
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib
import enum
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path, PurePath
from typing import Any

_CONVERSION = re.compile(r"%(?:%|[#0\- +]*(?:\d+|\*)?(?:\.(?:\d+|\*))?[diouxXeEfFgGcrsa])")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(\S+)")
_EVENT_WORD = re.compile(r"[A-Za-z0-9_.-]+:?")
_RESERVED = frozenset({"ts", "level", "logger", "event", "msg", "exc"})
JSON_LOG = "mailplat.jsonl"
_TEMPLATE_CACHE_MAX = 4096
# One encoder for every record: json.dumps(..., default=str) builds a new one per call.
_json = json.JSONEncoder(ensure_ascii=False, default=str).encode
_LEVELS = {name: name.lower() for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}


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
            "level": _LEVELS.get(record.levelname) or record.levelname.lower(),
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
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            entry["exc"] = record.exc_text
        return _json(entry)


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


W3C_LOGGER = "mailplat.w3c"
# The most a crash (kill -9, power loss) can take from the log files: records
# are written by the writer thread at least this often.
FLUSH_SECONDS = 0.25
# A batch this long is written at once, without waiting for the interval.
FLUSH_RECORDS = 4096


# -- the hot path: keep the record, nothing else -------------------------------------------

# Argument types whose text cannot change between the call and the write.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_STEADY = (str, int, float, bytes, BaseException, PurePath, enum.Enum)
_START = time.time()  # as logging's own _startTime, for relativeCreated
_FILE_NAMES: dict[str, tuple[str, str]] = {}


class _Record(logging.LogRecord):
    """A LogRecord made with less work, the same attributes.

    With caller, thread and process lookups off (setup() turns them off, as the
    logging docs suggest), most of LogRecord.__init__ is constant work: the
    file and module name of "(unknown file)", the thread and process fields.
    """

    def __init__(
        self,
        name: str,
        level: int,
        pathname: str,
        lineno: int,
        msg: object,
        args: Any,
        exc_info: Any,
        func: str | None = None,
        sinfo: str | None = None,
        **kwargs: Any,
    ) -> None:
        if logging.logThreads or logging.logProcesses or logging.logMultiprocessing:
            super().__init__(name, level, pathname, lineno, msg, args, exc_info, func, sinfo)
            return
        ct = time.time()
        self.name = name
        self.msg = msg
        # LogRecord's rule: a lone non-empty mapping is the mapping for %(key)s.
        if (
            args
            and len(args) == 1
            and type(args[0]) not in _PLAIN
            and isinstance(args[0], collections.abc.Mapping)
            and args[0]
        ):
            args = args[0]
        self.args = args
        self.levelname = logging.getLevelName(level)
        self.levelno = level
        self.pathname = pathname
        names = _FILE_NAMES.get(pathname)
        if names is None:
            try:
                filename = os.path.basename(pathname)
                names = (filename, os.path.splitext(filename)[0])
            except (TypeError, ValueError, AttributeError):
                names = (pathname, "Unknown module")
            if len(_FILE_NAMES) < _TEMPLATE_CACHE_MAX:
                _FILE_NAMES[pathname] = names
        self.filename, self.module = names
        self.exc_info = exc_info
        self.exc_text = None
        self.stack_info = sinfo
        self.lineno = lineno
        self.funcName = func  # type: ignore[assignment]  # None, as LogRecord itself allows
        self.created = ct
        self.msecs = int((ct - int(ct)) * 1000) + 0.0
        self.relativeCreated = (ct - _START) * 1000
        self.thread = None
        self.threadName = None
        self.processName = None
        self.process = None


class _Snapshot:
    """An argument of another type, as it read when it was logged (str and repr)."""

    __slots__ = ("_repr", "_str")

    def __init__(self, value: object) -> None:
        self._str = str(value)
        self._repr = repr(value)

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return self._repr


def _steady(record: logging.LogRecord) -> None:
    """Pin what a later format would read, so a record written later reads as it was logged.

    Almost every call passes strings and numbers, which are left alone; anything
    else (a list, a dataclass) is turned into its text now.
    """
    args = record.args
    if not args:
        if type(record.msg) is not str:
            record.msg = str(record.msg)
        return
    if type(args) is tuple:
        for arg in args:
            if type(arg) not in _PLAIN and not isinstance(arg, _STEADY):
                record.args = tuple(
                    a if type(a) in _PLAIN or isinstance(a, _STEADY) else _Snapshot(a) for a in args
                )
                break
        if type(record.msg) is str:
            return
    # A mapping argument or an object as the message: the whole text now.
    try:
        record.msg = record.getMessage()
    except (TypeError, ValueError):
        record.msg = f"{record.msg!s} {args!r}"
    record.args = None


class _Enqueue(logging.Handler):
    """The handler on the mailplat loggers: hands each record to the writer, at once.

    No lock, no filter, no formatting here (Handler.handle would take a lock
    per record); the writer thread formats and writes a whole batch at a time.
    """

    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self.writer = writer

    def handle(self, record: logging.LogRecord) -> bool:
        self.writer.put(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.writer.put(record)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
        super().close()


# -- the writer thread: format a batch, one write per file ---------------------------------


class _Stamps:
    """strftime once per second: every record of one second shares the stamp."""

    def __init__(self, fmt: str, utc: bool) -> None:
        self._fmt = fmt
        self._convert = time.gmtime if utc else time.localtime
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._text = time.strftime(self._fmt, self._convert(created))
        return self._text


_EXC = logging.Formatter()


def _message(record: logging.LogRecord) -> str:
    """record.getMessage(), once per record (every text file shares it), never raising."""
    text: str | None = record.__dict__.get("message")
    if text is None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = f"{record.msg!s} {record.args!r}"  # a bad template: keep the line anyway
        record.message = text
    return text


def _with_traceback(line: str, record: logging.LogRecord) -> str:
    """The line and, as logging.Formatter writes them, the exception and stack below it."""
    if record.exc_info and not record.exc_text:
        record.exc_text = _EXC.formatException(record.exc_info)
    if record.exc_text:
        line += "\n" + record.exc_text
    if record.stack_info:
        line += "\n" + _EXC.formatStack(record.stack_info)
    return line


def _text_line(fmt: str, utc: bool = False) -> Callable[[logging.LogRecord], str]:
    """A line maker for `stamp<TAB or space>...`: "console", "activity" or "w3c"."""
    stamp = _Stamps(
        {"console": "%Y-%m-%dT%H:%M:%S"}.get(fmt, "%Y-%m-%d %H:%M:%S"), utc=fmt == "w3c"
    )
    if fmt == "console":

        def console(record: logging.LogRecord) -> str:
            line = f"{stamp(record.created)} {record.levelname} {record.name} {_message(record)}"
            return _with_traceback(line, record)

        return console
    if fmt == "activity":

        def activity(record: logging.LogRecord) -> str:
            return _with_traceback(
                f"{stamp(record.created)}\t{record.name}\t{_message(record)}", record
            )

        return activity

    def w3c(record: logging.LogRecord) -> str:
        return f"{stamp(record.created)} {_message(record)}"

    return w3c


@dataclass(slots=True)
class _Sink:
    """One destination: which records go there, how each becomes a line, the open file.

    `w3c` sinks take the records of the W3C logger, the others every other
    record (or those `only` accepts).
    """

    handler: logging.StreamHandler[Any]
    line: Callable[[logging.LogRecord], str]
    w3c: bool = False
    only: Callable[[logging.LogRecord], bool] | None = None
    failed_at: float = 0.0

    def write(self, batch: list[logging.LogRecord]) -> None:
        line, only = self.line, self.only
        lines = [line(r) for r in batch] if only is None else [line(r) for r in batch if only(r)]
        if not lines:
            return
        handler = self.handler
        if isinstance(handler, TimedRotatingFileHandler) and handler.shouldRollover(batch[-1]):
            handler.doRollover()
        lines.append("")
        stream = handler.stream
        stream.write("\n".join(lines))
        stream.flush()

    def close(self) -> None:
        self.handler.close()


class _Writer:
    """Records in a queue; a thread that writes them out in batches.

    Guarantees: a clean stop (close(), or logging.shutdown() at exit) writes
    every record; a crash loses at most the last FLUSH_SECONDS. Records of one
    file keep their order.
    """

    def __init__(self, sinks: list[_Sink]) -> None:
        self.sinks = sinks
        self._records: collections.deque[logging.LogRecord] = collections.deque()
        self._lock = threading.Lock()  # one batch at a time, in order
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mailplat-log", daemon=True)
        self._thread.start()

    def put(self, record: logging.LogRecord) -> None:
        _steady(record)
        records = self._records
        records.append(record)  # deque.append is atomic: any thread may log
        if len(records) >= FLUSH_RECORDS:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write every record queued so far."""
        with self._lock:
            records = self._records
            while records:
                batch = [records.popleft() for _ in range(min(len(records), FLUSH_RECORDS))]
                main = [r for r in batch if r.name != W3C_LOGGER]
                w3c = [r for r in batch if r.name == W3C_LOGGER] if len(main) < len(batch) else []
                for sink in self.sinks:
                    try:
                        sink.write(w3c if sink.w3c else main)
                    except Exception as exc:  # a full disk must not stop the other files
                        self._failed(sink, exc)

    def _failed(self, sink: _Sink, exc: Exception) -> None:
        now = time.monotonic()
        if now - sink.failed_at >= 60:  # one complaint a minute, not one per batch
            sink.failed_at = now
            name = getattr(sink.handler, "baseFilename", "stderr")
            with contextlib.suppress(Exception):
                sys.stderr.write(f"mailplat: cannot write the log {name}: {exc}\n")
                sys.stderr.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.flush()
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                sink.close()


def _file_handler(path: Path, rollover: str) -> logging.StreamHandler[Any]:
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


_writer: list[_Writer] = []  # the current one, so a second setup() closes the first


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
    daily, hourly or never. Writing is batched (see the module docstring).
    """
    # Several log lines per message: skip what no format here shows (caller
    # frame, thread and process names), as the logging docs' optimisation
    # section suggests; it was about a tenth of the logging cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.setLogRecordFactory(_Record)
    root = logging.getLogger("mailplat")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    w3c_log = logging.getLogger(W3C_LOGGER)
    w3c_log.propagate = False
    for logger in (root, w3c_log):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    while _writer:
        _writer.pop().close()
    console: logging.StreamHandler[Any] = logging.StreamHandler(sys.stderr)
    sinks = [_Sink(console, _text_line("console"))]
    # Disabled unless asked for, so the SMTP hot path skips it with one check.
    w3c_log.setLevel(logging.INFO if (w3c and log_dir is not None) else logging.CRITICAL + 1)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        if json_file:
            json_line = JsonFormatter().format
            sinks.append(_Sink(_file_handler(log_dir / JSON_LOG, rollover), json_line))
        if activity:
            handler = _file_handler(log_dir / "activity.log", rollover)
            sinks.append(_Sink(handler, _text_line("activity"), only=_activity))
        if w3c:
            path = log_dir / "smtp-w3c.log"
            w3c_handler: logging.StreamHandler[Any]
            if rollover == "never":
                w3c_handler = _W3CFile(path, encoding="utf-8")
            else:
                when = "midnight" if rollover == "daily" else "H"
                w3c_handler = _W3CRotating(path, when=when, utc=True, encoding="utf-8")
            sinks.append(_Sink(w3c_handler, _text_line("w3c"), w3c=True))
    writer = _Writer(sinks)
    _writer.append(writer)
    root.addHandler(_Enqueue(writer))
    w3c_log.addHandler(_Enqueue(writer))


def flush() -> None:
    """Write every record logged so far (tests, and before an intentional hard exit)."""
    for writer in _writer:
        writer.flush()


def shutdown() -> None:
    """Write everything, stop the writer and take setup()'s handlers off again."""
    for name in ("mailplat", W3C_LOGGER):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, _Enqueue):
                logger.removeHandler(handler)
                handler.close()
    while _writer:
        _writer.pop().close()
    logging.setLogRecordFactory(logging.LogRecord)


# -- reading the JSON log back: `mailplat trace` ---------------------------------------

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
