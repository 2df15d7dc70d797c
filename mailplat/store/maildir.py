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

Blocking calls (fsync); async callers run them in a worker thread.
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
_W_SIZE = re.compile(r",W=(\d+)")
_NAME_TIME = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)\.")
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
    """Stored bytes -> canonical CRLF bytes for the wire (no bare CR or LF survives)."""
    out = _LINE_END.sub(b"\r\n", data)
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


def uid_of(filename: str) -> str:
    """The unique id of a Maildir file name: everything before the ':' info part."""
    return filename.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message as listed: stable uid, current path, size in CRLF octets."""

    uid: str
    path: Path
    size: int


class Maildir:
    """A Maildir directory (tmp/, new/, cur/) at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # uid -> last path seen, so read/delete rarely rescan cur/.
        self._known: dict[str, Path] = {}

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
        """Messages in new/ and cur/, oldest delivery first."""
        found: dict[str, tuple[tuple[float, int, str], MessageInfo]] = {}
        # new/ first so that a file caught mid-move (linked into cur/, not yet
        # unlinked from new/) is listed once, under its cur/ path.
        for sub in ("new", "cur"):
            folder = self.path / sub
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                if name.startswith("."):
                    continue
                uid = uid_of(name)
                path = folder / name
                try:
                    size = self._wire_size(uid, path)
                    key = self._sort_key(uid, path)
                except FileNotFoundError:
                    continue  # moved or deleted by another reader meanwhile
                found[uid] = (key, MessageInfo(uid=uid, path=path, size=size))
        ordered = [info for _, info in sorted(found.values(), key=lambda item: item[0])]
        self._known = {info.uid: info.path for info in ordered}
        return ordered

    @staticmethod
    def _wire_size(uid: str, path: Path) -> int:
        match = _W_SIZE.search(uid)
        if match:
            return int(match.group(1))
        # A file written by someone else: measure exactly what RETR will send.
        return len(to_wire(path.read_bytes()))

    @staticmethod
    def _sort_key(uid: str, path: Path) -> tuple[float, int, str]:
        match = _NAME_TIME.match(uid)
        if match:
            secs, usec, seq = (int(g) for g in match.groups())
            return (secs + usec / 1_000_000, seq, uid)
        return (path.stat().st_mtime, 0, uid)

    def _locate(self, uid: str) -> Path | None:
        known = self._known.get(uid)
        if known is not None and known.exists():
            return known
        candidate = self.path / "new" / uid
        if candidate.exists():
            return candidate
        try:
            names = os.listdir(self.path / "cur")
        except FileNotFoundError:
            names = []
        for name in names:
            if uid_of(name) == uid:
                return self.path / "cur" / name
        return None

    def read(self, uid: str) -> bytes:
        """The stored bytes (LF endings) of one message; KeyError when it is gone."""
        for _ in range(3):
            path = self._locate(uid)
            if path is None:
                break
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                self._known.pop(uid, None)
                continue  # another reader moved it between locate and open
            self._known[uid] = path
            return data
        raise KeyError(uid)

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
                    size = path.stat().st_size
                    path.unlink()
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
            self._known[uid] = dst
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
