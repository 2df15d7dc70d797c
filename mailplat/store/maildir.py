"""One Maildir: deliver, list, read, delete and mark seen, crash-safe.

Input: message bytes (CRLF or LF line endings) for `deliver`; unique ids for
the rest. Output: files under tmp/, new/ and cur/ as Dovecot, mutt and
Courier expect: LF line endings, names `<secs>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<wire-size>`.

Guarantees:
- No partial message is ever visible: a message is written to tmp/, fsynced,
  linked into new/ and only then is new/ fsynced (RELIABILITY.md guarantee 3).
  `deliver` returns only after all of that, so a caller may acknowledge
  (or, with sync_dir=False, after the file part: the caller syncs new/).
- The uid (the file name before ':') never changes: not when a reader moves
  the file from new/ to cur/ and adds flags, not across restarts.
- `MessageInfo.size` is exactly the number of octets `to_wire` yields for the
  file, which is what POP3 RETR sends before dot-stuffing (RFC 1939 §5 LIST).
  Listing opens no message file: sizes come from `,W=` in the name; a file
  without it (another program's mail) is read once, by `measure`, when a size
  is asked for, and its size is remembered for the life of the process.

Blocking calls (fsync, big reads); async callers run them in a worker thread.
`read_small` is the exception: a bounded read of a small file, cheaper on the
event loop than the hop to a thread.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mailplat.core.durable import fsync_dir as _fsync_dir
from mailplat.core.durable import write_all as _write_all

_SUBDIRS = ("tmp", "new", "cur")
_LINE_END = re.compile(rb"\r\n|\r|\n")
# maildir(5) names start with the delivery time: `secs.M<usec>P<pid>Q<n>.host`
# (ours, Courier), `secs.M<usec>P<pid>.host` (Dovecot), `secs.<pid>.host` (qmail).
_NAME_TIME = re.compile(r"([0-9]+)\.(?:M([0-9]+)P[0-9]+(?:Q([0-9]+))?)?")
_STALE_TMP_SECONDS = 36 * 3600  # the Maildir convention (qmail maildir(5))

_counter = itertools.count(1)
_counter_lock = threading.Lock()


def to_lf(data: bytes) -> bytes:
    """Every line ending (CRLF, bare CR, bare LF) -> LF, ending with LF unless empty."""
    out = _LINE_END.sub(b"\n", data)
    if out and not out.endswith(b"\n"):
        # RETR must end its data with CRLF before the terminating dot; storing the
        # final newline keeps the W= size equal to the bytes actually sent.
        out += b"\n"
    return out


def to_wire(data: bytes) -> bytes:
    """Stored bytes -> canonical CRLF bytes for the wire (no bare CR or LF survives).

    Bytes methods only (each a C loop): an LF-only file, which is what we store,
    is one replace; a file that is already clean CRLF comes back as it is.
    """
    if b"\r" not in data:
        out = data.replace(b"\n", b"\r\n")
    else:
        crlf = data.count(b"\r\n")
        if crlf == data.count(b"\r") and crlf == data.count(b"\n"):
            out = data
        else:
            # Same result as one pass over CRLF|CR|LF: pairs first, then the lone ends.
            out = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


@functools.cache
def _hostname() -> str:
    # maildir(5): '/' and ':' in the host part are written as octal escapes; Dovecot
    # escapes ',' too because ',' starts the S=/W= fields. Looked up once: a
    # system call per delivery for a value that does not change.
    host = socket.gethostname() or "localhost"
    return host.replace("/", r"\057").replace(":", r"\072").replace(",", r"\054")


def _fault(point: str) -> None:
    """Call mailplat.spool.faults.fault(point) when that test hook is installed.

    Looked up at run time on purpose: store and spool are sibling layers that
    must not import each other, and the hook is harness plumbing, not a
    dependency of the Maildir logic.
    """
    hook = _fault_hook()
    if hook is not None:
        hook(point)


_hook_cache: list[Callable[[str], None] | None] = []


def _fault_hook() -> Callable[[str], None] | None:
    if not _hook_cache:
        try:
            module = importlib.import_module("mailplat.spool.faults")
            hook: Callable[[str], None] | None = getattr(module, "fault", None)
        except ImportError:
            hook = None
        _hook_cache.append(hook)
    return _hook_cache[0]


def sync_filesystem() -> None:
    """Make everything written so far durable with one sync(2) (bulk provisioning).

    Python has no syncfs(2); sync(2) flushes every filesystem, a fair price for
    an admin command that just created thousands of directories.
    """
    os.sync()


def _sort_key(uid: str) -> tuple[int, int, int, str] | None:
    """(seconds, microseconds, sequence, uid) from the name; None when it has no time."""
    match = _NAME_TIME.match(uid)
    if match is None:
        return None
    secs, usec, seq = match.groups()
    return (int(secs), int(usec or 0), int(seq or 0), uid)


def uid_of(filename: str) -> str:
    """The unique id of a Maildir file name: everything before the ':' info part."""
    return filename.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message as listed: stable uid, current file, size in CRLF octets.

    `size` is None when the name does not carry it (`,W=`, which we and Dovecot
    write) and it was not measured yet: `Maildir.measure` fills it in. `stored`
    is the file's own size from `,S=` when the name has it (a read-size hint).
    `file` is the path as a string (a listing makes hundreds; Path objects cost).
    """

    uid: str
    file: str
    size: int | None
    stored: int | None = None

    @property
    def path(self) -> Path:
        return Path(self.file)

    @property
    def in_new(self) -> bool:
        """Still in new/ (not yet seen by any reader)."""
        return self.file.rsplit("/", 2)[-2] == "new"


def name_field(uid: str, key: str) -> int | None:
    """The number of a `,S=` or `,W=` field in a Maildir name, None when absent or garbled.

    maildir(5) and Dovecot: fields follow the unique part, each starting with
    ','; host names escape ',' (\\054), so a ',' always starts a field.
    """
    at = uid.find(key)
    if at < 0:
        return None
    digits = uid[at + len(key) :].partition(",")[0]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def wire_size(data: bytes) -> int:
    """len(to_wire(data)) without building it (bytes counts, no copy in the usual cases)."""
    if b"\r" not in data:
        size = len(data) + data.count(b"\n")
        return size + 2 if data and not data.endswith(b"\n") else size
    crlf = data.count(b"\r\n")
    if crlf == data.count(b"\r") and crlf == data.count(b"\n"):
        return len(data) + 2 if data and not data.endswith(b"\r\n") else len(data)
    return len(to_wire(data))


def _read_fd(fd: int, hint: int | None, limit: int | None) -> bytes | None:
    """Read an open file to its end, or None when it is bigger than `limit`.

    `hint` is the size the name claims (trusted only to size the first read,
    so a wrong one costs a stat, never a short or oversized read).
    """
    if hint is None or (limit is not None and hint > limit):
        hint = os.fstat(fd).st_size
    if limit is not None and hint > limit:
        return None
    data = os.read(fd, hint + 1)
    if len(data) <= hint:
        return data  # a short read of a regular file is its end
    if limit is not None and os.fstat(fd).st_size > limit:
        return None
    parts = [data]
    while chunk := os.read(fd, 1 << 16):
        parts.append(chunk)
    return b"".join(parts)


# Exact sizes of files whose names lack `,W=` (mail another program wrote),
# measured once per process: a Maildir file never changes under its uid, so its
# size never does. Per Maildir path, bounded; past the bound the Maildirs
# measured longest ago are forgotten and would be measured again.
_MEASURED: dict[str, dict[str, int]] = {}
_MEASURED_MAX = 200_000
_measured_lock = threading.Lock()


def _remember_sizes(folder: str, sizes: dict[str, int]) -> None:
    with _measured_lock:
        known = _MEASURED.pop(folder, {})
        known.update(sizes)
        _MEASURED[folder] = known  # re-inserted: most recently measured last
        total = sum(len(v) for v in _MEASURED.values())
        while total > _MEASURED_MAX and len(_MEASURED) > 1:
            oldest = next(iter(_MEASURED))
            total -= len(_MEASURED.pop(oldest))


class Maildir:
    """A Maildir directory (tmp/, new/, cur/) at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # uid -> last path seen, so read/delete rarely rescan cur/.
        self._known: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Maildir({str(self.path)!r})"

    def create(self, sync: bool = True) -> None:
        """Create the directory and tmp/, new/, cur/ with mode 0700 (idempotent).

        sync=False leaves the directory fsyncs to the caller: bulk provisioning
        creates thousands and then calls sync_filesystem() once.
        """
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in _SUBDIRS:
            (self.path / sub).mkdir(mode=0o700, exist_ok=True)
        for target in (self.path, *(self.path / s for s in _SUBDIRS)):
            os.chmod(target, 0o700)  # mkdir's mode is filtered by the umask
        if sync:
            _fsync_dir(self.path)
            _fsync_dir(self.path.parent)

    # -- delivery ---------------------------------------------------------------

    def _unique_name(self, size: int, wire_size: int) -> str:
        now = time.time_ns()
        secs, usec = divmod(now // 1000, 1_000_000)
        with _counter_lock:
            n = next(_counter)
        return f"{secs}.M{usec}P{os.getpid()}Q{n}.{_hostname()},S={size},W={wire_size}"

    def deliver(self, data: bytes, *, sync_dir: bool = True) -> str:
        """Store one message in new/; return its file name (which is its uid).

        The file is fsynced before it is linked into new/, always. With
        sync_dir=False the caller fsyncs new/ itself (local delivery groups
        that over a batch) before it counts the delivery as done.
        """
        stored = to_lf(data)
        # Each stored LF becomes CRLF on the wire, and to_lf left no CR behind.
        wire_size = len(stored) + stored.count(b"\n")
        tmp_dir, new_dir = self.path / "tmp", self.path / "new"
        for _ in range(10):
            name = self._unique_name(len(stored), wire_size)
            tmp = tmp_dir / name
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            try:
                try:
                    _write_all(fd, data=stored)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except BaseException:
                # Disk full or I/O error: leave nothing behind, let the caller answer 4xx.
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            _fault("maildir.after_tmp_write")
            try:
                self._publish(tmp, new_dir / name)
            except FileExistsError:
                tmp.unlink()
                continue
            _fault("maildir.after_link")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            if sync_dir:
                _fsync_dir(new_dir)
            return name
        raise OSError(errno.EEXIST, "could not find a unique Maildir name", str(tmp_dir))

    @staticmethod
    def _publish(tmp: Path, final: Path) -> None:
        # qmail's commit: link() fails if the name exists instead of overwriting it.
        try:
            os.link(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                raise
            # File systems without hard links: rename is still atomic.
            if final.exists():
                raise FileExistsError(errno.EEXIST, "exists", str(final)) from exc
            os.rename(tmp, final)

    # -- listing and reading -----------------------------------------------------

    def messages(self) -> list[MessageInfo]:
        """Messages in new/ and cur/, oldest delivery first; no message file is opened.

        Sizes come from the names (`,W=`) or from earlier measure() calls; the
        rest are None. The order comes from the delivery time that starts a
        Maildir name, with one stat only for a name that does not start with one.
        """
        found: dict[str, tuple[tuple[int, int, int, str], MessageInfo]] = {}
        measured = _MEASURED.get(str(self.path), {})
        # new/ first so that a file caught mid-move (linked into cur/, not yet
        # unlinked from new/) is listed once, under its cur/ path.
        for sub in ("new", "cur"):
            folder = f"{self.path}/{sub}/"
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                if name.startswith("."):
                    continue
                uid = uid_of(name)
                path = folder + name
                key = _sort_key(uid)
                if key is None:
                    try:
                        mtime = os.stat(path).st_mtime_ns
                    except FileNotFoundError:
                        continue  # moved or deleted by another reader meanwhile
                    key = (mtime // 1_000_000_000, mtime % 1_000_000_000 // 1000, 0, uid)
                size = name_field(uid, ",W=")
                if size is None:
                    size = measured.get(uid)
                found[uid] = (key, MessageInfo(uid, path, size, name_field(uid, ",S=")))
        ordered = [info for _, info in sorted(found.values(), key=lambda item: item[0])]
        self._known = {info.uid: info.file for info in ordered}
        return ordered

    def measure(self, infos: list[MessageInfo]) -> list[MessageInfo]:
        """The same messages with every size known: a file whose name lacks `,W=` is read.

        Each such file is read once per process (its size is remembered). A
        message gone meanwhile gets size 0; RETR will say it is gone.
        """
        missing = [i for i in infos if i.size is None]
        if not missing:
            return infos
        sizes: dict[str, int] = {}
        for info in missing:
            try:
                sizes[info.uid] = wire_size(self.read(info.uid))
            except KeyError:
                continue
        _remember_sizes(str(self.path), sizes)
        return [
            i if i.size is not None else MessageInfo(i.uid, i.file, sizes.get(i.uid, 0), i.stored)
            for i in infos
        ]

    def _locate(self, uid: str) -> str | None:
        known = self._known.get(uid)
        if known is not None:
            return known  # opening it tells whether it is still there
        candidate = f"{self.path}/new/{uid}"
        if os.path.exists(candidate):
            return candidate
        try:
            names = os.listdir(self.path / "cur")
        except FileNotFoundError:
            names = []
        for name in names:
            if uid_of(name) == uid:
                return f"{self.path}/cur/{name}"
        return None

    def _read(self, uid: str, limit: int | None, stored: int | None = None) -> bytes | None:
        for _ in range(3):
            path = self._locate(uid)
            if path is None:
                break
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                self._known.pop(uid, None)
                continue  # another reader moved it between locate and open
            try:
                hint = stored if stored is not None else name_field(uid, ",S=")
                data = _read_fd(fd, hint, limit)
            finally:
                os.close(fd)
            self._known[uid] = path
            return data
        raise KeyError(uid)

    def read(self, uid: str) -> bytes:
        """The stored bytes (LF endings) of one message; KeyError when it is gone."""
        data = self._read(uid, None)
        assert data is not None  # no limit, so never "too big"
        return data

    def read_small(self, uid: str, limit: int, stored: int | None = None) -> bytes | None:
        """The stored bytes of a message of at most `limit` bytes; None when it is bigger.

        Cheap enough for an event loop (open, read, close; a stat only when
        neither `stored` (MessageInfo.stored) nor the name gives the size); a
        bigger file is for read() in a worker thread. KeyError when it is gone.
        """
        return self._read(uid, limit, stored)

    # -- changes ------------------------------------------------------------------

    def delete(self, uids: Iterable[str]) -> int:
        """Unlink the messages and fsync the folders; return the bytes freed on disk.

        A uid that is already gone counts as deleted: another reader got there first.
        """
        freed = 0
        for uid in uids:
            for _ in range(3):
                path = self._locate(uid)
                if path is None:
                    break
                try:
                    size = os.stat(path).st_size
                    os.unlink(path)
                except FileNotFoundError:
                    self._known.pop(uid, None)
                    continue
                freed += size
                self._known.pop(uid, None)
                break
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                _fsync_dir(self.path / sub)
        return freed

    def mark_seen(self, uids: Iterable[str]) -> None:
        """Move messages still in new/ to cur/ with the Seen flag (maildir(5) `:2,S`)."""
        moved = False
        for uid in uids:
            src = self.path / "new" / uid
            dst = self.path / "cur" / f"{uid}:2,S"
            try:
                os.rename(src, dst)
            except FileNotFoundError:
                continue  # already in cur/ or deleted
            self._known[uid] = str(dst)
            moved = True
        if moved:
            _fsync_dir(self.path / "cur")
            _fsync_dir(self.path / "new")

    def usage_bytes(self) -> int:
        """Bytes on disk used by the messages in new/ and cur/."""
        total = 0
        for sub in ("new", "cur"):
            folder = self.path / sub
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if not entry.name.startswith(".") and entry.is_file():
                        total += entry.stat().st_size
        return total

    def clean_tmp(self, max_age: float = _STALE_TMP_SECONDS) -> int:
        """Remove tmp/ files older than `max_age` seconds (left by a crash); return the count."""
        removed = 0
        cutoff = time.time() - max_age
        folder = self.path / "tmp"
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return 0
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed


JUNK_FOLDER = ".Junk"


def junk_folder(mailbox: Path) -> Maildir:
    """The mailbox's Junk folder (Maildir++ `.Junk`), created on first use.

    A Maildir++ subfolder is a Maildir inside the mailbox's own, marked by
    an empty `maildirfolder` file; IMAP clients show it as Junk. Creating it
    is idempotent, so two deliveries racing to make it both succeed.
    """
    folder = Maildir(mailbox / JUNK_FOLDER)
    marker = folder.path / "maildirfolder"
    if not marker.exists():
        mailbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.create()
        marker.touch(mode=0o600)
        _fsync_dir(folder.path)
    return folder
