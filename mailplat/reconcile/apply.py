"""Apply a plan: provision Maildirs, deliver welcome messages, record the generation.

Input: a validated SiteConfig, its Plan and Effects, a data root. Output: an
ApplyResult (Maildirs created, welcomes delivered, mail kept, the generation
written). Also `observe`, the disk side of planning: which Maildirs exist and
how many messages a removed mailbox still holds.

Level-based and idempotent (Kubernetes controllers' habit): every run creates
whatever Maildir is missing, whatever the plan says, and a second run does
nothing. Guarantees:
- mail is never deleted: a mailbox removed from YAML keeps its Maildir and
  messages where they are (RELIABILITY.md guarantee 3);
- a welcome message goes only into a Maildir this run created, so it is
  delivered at most once (a crash between creating and delivering loses the
  welcome, never duplicates it);
- the generation is written last and atomically, so a failed apply leaves the
  previous generation in place and the next plan shows the same changes;
- one apply at a time per data root (an exclusive lock on state/apply.lock).

Telling a running server about the new generation (the control socket) is a
later issue; nothing here pretends to do it.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, localtime, make_msgid
from pathlib import Path

from mailplat.config.directory import Directory
from mailplat.config.load import SiteConfig
from mailplat.config.models.postoffice import Welcome
from mailplat.core.errors import MailplatError
from mailplat.reconcile.diff import Plan
from mailplat.reconcile.effects import (
    Effects,
    KeptMail,
    Observed,
    effects,
    existing_maildirs,
    mailbox_keys,
    maildir_path,
)
from mailplat.reconcile.state import (
    Generation,
    now_iso,
    read_generation_head,
    snapshot,
    state_dir,
    write_generation,
)
from mailplat.store.maildir import Maildir, sync_filesystem

# Called after each Maildir with (done, total, mailbox key), and once more with
# SYNCING while the filesystem is flushed; the CLI draws a progress bar from it.
Progress = Callable[[int, int, str], None]
SYNCING = "syncing to disk"


class ApplyError(MailplatError):
    """Provisioning failed; the previous generation stays in place."""


@dataclass(frozen=True)
class ApplyResult:
    generation: Generation
    written: bool  # False when nothing changed and the generation was kept
    created: tuple[str, ...]
    welcomed: tuple[str, ...]
    kept: tuple[KeptMail, ...]


def observe(
    config: SiteConfig, plan: Plan, data_root: Path, changed_only: bool = False
) -> Observed:
    """Which Maildirs exist, and the message count of every mailbox the plan removes.

    changed_only (a running server's reload) looks only at the postoffices
    the plan touches and takes the others as provisioned: a one-line change
    must not stat 100,000 directories. Offline apply keeps the level-based
    check of every mailbox.
    """
    only = touched_postoffices(plan) if changed_only else None
    keys = set(mailbox_keys(config, only)) | set(plan_removed(plan))
    existing = frozenset(existing_maildirs(data_root, keys))
    messages = {
        c.name: len(Maildir(maildir_path(data_root, c.name)).messages())
        for c in plan.of("mailbox", "-")
        if c.name in existing
    }
    return Observed(data_root, existing, messages, only)


def touched_postoffices(plan: Plan) -> frozenset[str]:
    """The postoffices a plan adds, changes or removes something in."""
    return frozenset(c.postoffice for c in plan.changes if c.postoffice is not None)


def plan_removed(plan: Plan) -> list[str]:
    return [c.name for c in plan.of("mailbox", "-")]


def welcome_message(config: SiteConfig, welcome: Welcome, to: str) -> bytes:
    """An RFC 5322 message (From, To, Subject, Date, Message-ID) with the welcome text."""
    server = config.site.server
    msg = EmailMessage(policy=SMTP)
    msg["From"] = server.notification_sender or f"postmaster@{server.local_domain}"
    msg["To"] = to
    msg["Subject"] = welcome.subject
    msg["Date"] = format_datetime(localtime())
    msg["Message-ID"] = make_msgid(domain=server.local_domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5: no autoreply loops
    msg.set_content(welcome.body)
    return msg.as_bytes()


@contextlib.contextmanager
def apply_lock(data_root: Path) -> Iterator[None]:
    """Hold the data root's apply lock; refuse if another apply holds it."""
    folder = state_dir(data_root)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "apply.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ApplyError(
                f"another apply is running on {data_root} (state/apply.lock is held)"
            ) from exc
        yield
    finally:
        os.close(fd)


def applied_by() -> str:
    """user@host of whoever runs apply (for the generation record)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def provision(
    config: SiteConfig,
    data_root: Path,
    fx: Effects,
    progress: Progress | None = None,
) -> tuple[list[str], list[str]]:
    """Create the missing Maildirs; deliver welcomes into the ones created now."""
    directory: Directory | None = None  # built only if a welcome needs an address
    created: list[str] = []
    welcomed: list[str] = []
    total = len(fx.maildirs)
    # Past a few dozen, one syncfs at the end beats two directory fsyncs each.
    bulk = total > 32
    for i, item in enumerate(fx.maildirs, 1):
        maildir = Maildir(item.path)
        fresh = not item.path.exists()
        try:
            maildir.create(sync=not bulk)
            created.append(item.mailbox)
            po_name = item.mailbox.split("/", 1)[0]
            welcome = config.postoffices[po_name].welcome
            if fresh and welcome is not None:
                directory = directory or Directory(config)
                entry = directory.mailboxes[item.mailbox]
                maildir.deliver(welcome_message(config, welcome, entry.primary))
                welcomed.append(item.mailbox)
        except OSError as exc:
            raise ApplyError(f"cannot provision {item.mailbox} at {item.path}: {exc}") from exc
        if progress is not None:
            progress(i, total, item.mailbox)
    if bulk:
        if progress is not None:
            progress(total, total, SYNCING)
        sync_filesystem()
    return created, welcomed


def apply(
    config: SiteConfig,
    plan: Plan,
    data_root: Path,
    *,
    by: str | None = None,
    progress: Progress | None = None,
    changed_only: bool = False,
    applied: Generation | None = None,
) -> ApplyResult:
    """Provision and record the new generation; idempotent.

    The result's generation carries no snapshot when nothing was written.
    `applied` is the generation the plan was made against (with its
    snapshot): the new one is then written as a delta against it.
    """
    with apply_lock(data_root):
        # Re-read under the lock: the plan shown may be stale if another apply ran.
        current = read_generation_head(data_root)
        if (current.digest if current else None) != plan.old_digest:
            raise ApplyError("the applied state changed since this plan was made; plan again")
        fx = effects(plan, config, observe(config, plan, data_root, changed_only))
        created, welcomed = provision(config, data_root, fx, progress)
        if current is not None and plan.empty:
            return ApplyResult(current, False, tuple(created), tuple(welcomed), fx.kept)
        generation = Generation(
            number=(current.number + 1) if current else 1,
            digest=config.digest,
            applied_at=now_iso(),
            applied_by=by or applied_by(),
            snapshot=plan.new_snapshot if plan.new_snapshot is not None else snapshot(config),
            po_digests=dict(config.po_digests),
            site_digest=config.site_digest,
        )
        base = applied if applied is not None and applied.digest == plan.old_digest else None
        write_generation(data_root, generation, base)
        return ApplyResult(generation, True, tuple(created), tuple(welcomed), fx.kept)
