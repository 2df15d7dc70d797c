"""The mail server process: start everything a site declares, stop it gracefully.

Server.start() binds the listeners first (one line logged per bound
address; as root on ports below 1024), then drops root to server.user when
one is set, checks the data root is usable, opens the spool (recovering
whatever a crash left) and starts the MTA agent and deliveries. Sessions that
arrive meanwhile wait for the spool before their DATA is accepted. A start
that fails raises StartError (one line: the problem and the fix) after
closing everything it opened, so a failed start is never taken for a crash
by the next one. serve_until(event) runs until the event is set (signals in the
CLI, a plain event in tests). stop() is uvicorn's four steps: stop
accepting, let sessions finish (up to a timeout), cancel the rest, flush.
The Directory is one reference, swapped whole by a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import logging
import os
import pwd
import resource
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailplat.auth import passwords
from mailplat.auth.logins import Logins, Outcome
from mailplat.auth.memory import ExpiringMemory, PopBeforeSmtp
from mailplat.auth.throttle import Limits, LoginThrottle
from mailplat.config.directory import Directory, MailboxEntry
from mailplat.config.dkimkeys import KeyRing, check_dkim_keys
from mailplat.config.load import LoadCache, SiteConfig
from mailplat.config.models.site import Server as ServerSettings
from mailplat.config.models.site import Site
from mailplat.connectors.postoffice.deliver import LocalDelivery
from mailplat.connectors.smtp_in.listener import ConnectionGate
from mailplat.connectors.smtp_out import manage
from mailplat.connectors.smtp_out.deliver import OutboundDelivery
from mailplat.control import channel, lock
from mailplat.core.envelope import Envelope
from mailplat.core.errors import MailplatError
from mailplat.core.worker import Worker
from mailplat.dns.resolver import Resolver
from mailplat.mta.agent import Agent
from mailplat.reconcile.live import ConfigRefused, Reconciled, reconcile
from mailplat.reconcile.state import Generation, now_iso, read_generation
from mailplat.runtime import queue_control
from mailplat.runtime.listeners import BindError, Bound, ListenerSet, check_tls, specs
from mailplat.services.pop3.listener import Pop3Server
from mailplat.services.pop3.session import LoginDisabled, LoginThrottled, MailboxHandle
from mailplat.spool.queue import CLEAN_STOP, Spool
from mailplat.spool.replay import RecoveryReport
from mailplat.store.maildir import Maildir
from mailplat.store.paths import mailbox_dir
from mailplat.store.quota import QuotaTracker
from mailplat.trust import inbound as trust_inbound

log = logging.getLogger("mailplat.server")

__all__ = ["Bound", "RunAs", "Server", "StartError", "prepare_data_root", "run_as"]

RECENT_DIRECTORIES = 16
DNS_CHECK_TIMEOUT = 5.0  # a slow DNS must not hold an SMTP session for long
DISK_CHECK_SECONDS = 1.0  # statvfs at most this often on the SMTP path


def login_limits(site: Site) -> Limits:
    """The throttle's numbers from security.logins."""
    cfg = site.security.logins
    return Limits(
        max_failures_per_ip=cfg.max_failures_per_ip,
        window_minutes=cfg.window_minutes,
        cooldown_minutes=cfg.cooldown_minutes,
        account_slowdown_after=cfg.account_slowdown_after,
        account_max_delay_seconds=float(cfg.account_max_delay_seconds),
    )


PRIVILEGED_PORTS = 1024


class StartError(MailplatError):
    """The server cannot start; the message names the problem and the fix in one line."""


# -- privileges and the data root -----------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account a root-started server drops to (server.user/group)."""

    user: str
    uid: int
    gid: int


def run_as(settings: ServerSettings) -> RunAs | None:
    """The account to drop to, or None to stay as we are; StartError when it cannot work."""
    user = settings.user
    if user is None:
        if settings.group is not None:
            raise StartError("server.group is set without server.user; set both or neither")
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise StartError(
            f"server.user {user!r} does not exist on this host; create it "
            f"(useradd --system --no-create-home {user}) or change server.user"
        ) from None
    gid = entry.pw_gid
    if settings.group is not None:
        try:
            gid = grp.getgrnam(settings.group).gr_gid
        except KeyError:
            raise StartError(
                f"server.group {settings.group!r} does not exist on this host; create it "
                "or change server.group"
            ) from None
    if os.geteuid() != 0:
        if os.geteuid() == entry.pw_uid:
            return None  # started as that user already (e.g. by systemd's User=)
        raise StartError(
            f"server.user is {user!r}, but mailplat runs as uid {os.geteuid()}, not root: "
            f"start it as root (it binds the ports, then drops to {user}) or as {user}"
        )
    if entry.pw_uid == 0:
        raise StartError(f"server.user {user!r} is root; name an unprivileged user")
    return RunAs(user, entry.pw_uid, gid)


def _chown_tree(root: Path, account: RunAs) -> int:
    """Hand every file under root to the account (lchown where it differs); count changed."""
    changed = 0
    for dirpath, _dirs, files in os.walk(root):
        for path in (dirpath, *(os.path.join(dirpath, f) for f in files)):
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != (account.uid, account.gid):
                os.lchown(path, account.uid, account.gid)
                changed += 1
    return changed


def prepare_data_root(root: Path, account: RunAs | None, *extra: Path) -> None:
    """Create the data root; when root will drop to `account`, give it the whole tree.

    Maildirs made by an offline `mailplat apply` run as root belong to root;
    the dropped server must still deliver into them, so ownership is fixed on
    every start (only entries that differ are touched).
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        if account is not None:
            changed = sum(_chown_tree(p, account) for p in (root, *extra) if p.exists())
            if changed:
                log.info("data root handed to user=%s entries=%d", account.user, changed)
    except OSError as exc:
        raise StartError(
            f"cannot use data root {root}: {exc.strerror or exc} ({exc.filename or root}); "
            "pick a folder this user can write with --data, MAILPLAT_DATA or server.data_root"
        ) from exc


def check_data_root(root: Path) -> None:
    """StartError unless this process can create files in the data root and its folders."""
    who = _whoami()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        for sub in ("spool", "state", "postoffices"):
            path = root / sub
            if path.exists() and not os.access(path, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
    except OSError as exc:
        raise StartError(
            f"data root {root} is not usable by user {who}: {exc.strerror or exc} "
            f"({exc.filename or root}); fix: chown -R {who} {root} (and let {who} enter its "
            "parent folders), or pick another folder with --data"
        ) from exc


def _whoami() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def drop_privileges(account: RunAs) -> None:
    """Become the account for good: supplementary groups, then gid, then uid."""
    os.setgroups([account.gid])
    os.setgid(account.gid)
    os.setuid(account.uid)
    if os.getuid() != account.uid or os.geteuid() != account.uid or os.getegid() != account.gid:
        raise StartError(f"could not drop privileges to {account.user}")
    log.info("privileges dropped user=%s uid=%d gid=%d", account.user, account.uid, account.gid)


def check_keys(config: SiteConfig, ring: KeyRing | None = None) -> None:
    """StartError naming the first DKIM key that is missing or unusable (and how many more)."""
    problems = check_dkim_keys(config, ring)
    if not problems:
        return
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise StartError(
        f"cannot start: {problems[0].summary}{more}; DKIM keys are files on this host, not in "
        f"git: create them with `mailplat dkim keygen {config.root}` or fix key_file"
    )


def refuse_root(site: Site, root_dir: Path, account: RunAs | None) -> None:
    """Root on a real site (ports below 1024) must have somewhere to drop to."""
    if account is not None or os.geteuid() != 0:
        return
    low = sorted({s.port for s in specs(site, root_dir) if 0 < s.port < PRIVILEGED_PORTS})
    if low:
        ports = ", ".join(map(str, low))
        raise StartError(
            f"refusing to serve port(s) {ports} as root without server.user: set server.user "
            "in site.yaml (e.g. mailplat, made with `useradd --system --no-create-home "
            "mailplat`) so the server drops root once the ports are bound"
        )


class _Pop3Backend:
    """The POP3 service's view of the server: logins against the current Directory."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def authenticate(self, login: str, password: str, client_ip: str) -> MailboxHandle | None:
        return await self.server.pop3_authenticate(login, password, client_ip)


class Server:
    """One mailplat process serving one site."""

    def __init__(
        self,
        config: SiteConfig,
        data_root: Path,
        load_cache: LoadCache | None = None,
        run_as: RunAs | None = None,
    ) -> None:
        self.config = config
        self.data_root = data_root
        self.run_as = run_as
        self._directory = Directory(config)
        self.spool = Spool(data_root / "spool")
        self.quota = QuotaTracker()
        self.gate = ConnectionGate(bans=ExpiringMemory(data_root / "state" / "bans.json"))
        self.pop_memory = PopBeforeSmtp(data_root / "state" / "pop_before_smtp.json")
        self.throttle = LoginThrottle(
            data_root / "state" / "logins.json", login_limits(config.site)
        )
        self.logins = Logins(lambda: self._directory, self.throttle)
        self._disk_free: tuple[float, int] = (0.0, 0)
        # Directories of recent generations, so mail accepted just before a
        # reload is routed by the config its transaction was decided with.
        self._recent: OrderedDict[str, Directory] = OrderedDict({config.digest: self._directory})
        self.agent = Agent(
            self.spool, lambda: self._directory, self._wake, directory_for=self._recent.get
        )
        self.delivery = LocalDelivery(
            self.spool,
            lambda: self._directory,
            data_root,
            self._inject,
            self.quota,
            replied=ExpiringMemory(data_root / "state" / "autoreplies.json"),
        )
        self.outbound = OutboundDelivery(self.spool, lambda: self._directory, self._inject)
        self.listeners = ListenerSet(self, self.gate, self._new_pop3)
        self.control: asyncio.Server | None = None
        # The cache the config was loaded with, so the first reload parses only what changed.
        self.load_cache = load_cache or LoadCache()
        self._reload_lock = asyncio.Lock()
        self._tls_stamp = tls_stamp(config.site, config.root)
        self.generation: Generation | None = read_generation(data_root)
        self._applied: Generation | None = self.generation
        self.last_rejected: dict[str, Any] | None = None
        self._started_at = time.monotonic()
        self._resolver: Resolver | None = None
        self._resolver_servers: tuple[str, ...] = ()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = asyncio.Event()
        self._stopped = False
        self._lock_fd = -1

    # -- the context connectors see ---------------------------------------------

    @property
    def directory(self) -> Directory:
        return self._directory

    def swap(self, config: SiteConfig) -> None:
        """Replace the Directory in one assignment; sessions keep their snapshot."""
        self.config = config
        self._directory = Directory(config)
        self._remember(self._directory)
        self.throttle.limits = login_limits(config.site)

    def _remember(self, directory: Directory) -> None:
        self._recent[directory.digest] = directory
        self._recent.move_to_end(directory.digest)
        while len(self._recent) > RECENT_DIRECTORIES:
            self._recent.popitem(last=False)

    async def accept(self, env: Envelope, data: bytes) -> str:
        # Listeners are bound before the spool opens (privileges are dropped in
        # between); a DATA that arrives in those milliseconds waits for it.
        await self.started.wait()
        queue_id = await self.spool.receive(env, data)
        self.agent.kick()
        return queue_id

    async def _inject(self, env: Envelope, data: bytes) -> str:
        return await self.accept(env, data)

    def pop_before_smtp(self, ip: str) -> bool:
        return self.pop_memory.allowed(ip)

    def mailbox_room(self, key: str) -> int | None:
        """Bytes a mailbox can still take before its quota; None when it has none."""
        entry = self._directory.mailboxes.get(key)
        if entry is None or entry.quota_bytes is None:
            return None
        maildir = Maildir(self._maildir_path(entry))
        return max(0, entry.quota_bytes - self.quota.usage(maildir))

    def disk_room(self, size: int) -> bool:
        """True when the spool's disk keeps smtp.min_free_disk_mb free after `size` more bytes."""
        reserve = self._directory.site.smtp.min_free_disk_mb * 1024 * 1024
        now = time.monotonic()
        checked, free = self._disk_free
        if now - checked > DISK_CHECK_SECONDS:
            try:
                stat = os.statvfs(self.spool.root)
            except OSError:
                return True  # cannot tell: the spool write itself reports a full disk
            free = stat.f_bavail * stat.f_frsize
            self._disk_free = (now, free)
        return free - size >= reserve

    async def etrn(self, domain: str) -> int:
        """RFC 1985 ETRN: make the queued mail for `domain` due now; how many messages."""
        wanted = [
            e.id
            for e in manage.entries(self.spool)
            if any(r.rpartition("@")[2].lower() == domain for r in e.rcpts)
        ]
        for rid in wanted:
            with contextlib.suppress(manage.NotFound, manage.Busy):
                # Gone, or being delivered right now: either way it is moving.
                await manage.retry(self.spool, [rid], time.time())
        if wanted:
            self.outbound.kick()
        return len(wanted)

    def resolver(self) -> Resolver:
        """A resolver for the current dns_servers (rebuilt when a reload changes them)."""
        servers = tuple(self._directory.site.server.dns_servers)
        if self._resolver is None or self._resolver_servers != servers:
            # Cached per TTL: SPF, DKIM and DMARC ask the same names for every
            # message of a sender; the cache is what keeps verification cheap.
            self._resolver = Resolver(servers, timeout=DNS_CHECK_TIMEOUT, cache=True)
            self._resolver_servers = servers
        return self._resolver

    def _wake(self, queue: str) -> None:
        if queue == "postoffice":
            self.delivery.kick()
        elif queue == "smtp":
            self.outbound.kick()

    def _maildir_path(self, entry: MailboxEntry) -> Path:
        return mailbox_dir(self.data_root, entry.postoffice, entry.name)

    # -- authentication ----------------------------------------------------------

    async def pop3_authenticate(
        self, login: str, password: str, client_ip: str
    ) -> MailboxHandle | None:
        await self.started.wait()  # no Maildir is touched before privileges are dropped
        result = await self.logins.check(login, password, client_ip, "pop3")
        if result.outcome is Outcome.THROTTLED:
            raise LoginThrottled(client_ip)
        if result.outcome is Outcome.FAILED or result.entry is None:
            return None
        if result.outcome is Outcome.DISABLED:
            raise LoginDisabled(result.entry.key)
        maildir = Maildir(self._maildir_path(result.entry))
        if not maildir.path.exists():
            await asyncio.to_thread(maildir.create)
        return MailboxHandle(key=result.entry.key, maildir=maildir)

    def pop3_on_login(self, handle: MailboxHandle, client_ip: str) -> None:
        relay = self._directory.site.relay.pop_before_smtp
        if relay.enabled:
            self.pop_memory.record(client_ip, relay.minutes)

    # -- lifecycle -----------------------------------------------------------------

    def _new_pop3(self) -> Pop3Server:
        site = self._directory.site
        return Pop3Server(
            _Pop3Backend(self),
            host_name=site.server.host_name,
            require_tls_for_auth=site.listeners.pop3.auth_requires_tls,
            failed_login_delay=site.security.logins.failed_login_delay_seconds,
            idle_timeout=float(site.pop3.idle_timeout_seconds),
            on_login=self.pop3_on_login,
            max_connections=site.pop3.max_connections,
            max_connections_per_ip=site.pop3.max_connections_per_ip,
        )

    def _configure_pop3(self, site: Site) -> None:
        """A reload's POP3 settings reach the running service (new sessions and commands)."""
        if self.listeners.pop3 is not None:
            self.listeners.pop3.configure(
                require_tls_for_auth=site.listeners.pop3.auth_requires_tls,
                failed_login_delay=site.security.logins.failed_login_delay_seconds,
                idle_timeout=float(site.pop3.idle_timeout_seconds),
                max_connections=site.pop3.max_connections,
                max_connections_per_ip=site.pop3.max_connections_per_ip,
            )

    async def start(self) -> None:
        """Bind, drop root, open the spool, start the workers; StartError on failure."""
        asyncio.get_running_loop().set_exception_handler(loop_exception)
        raise_open_files()
        site = self._directory.site
        report: RecoveryReport | None = None
        try:
            # Read now, before dropping root: a reload keeps a key it may no longer read.
            check_keys(self.config, self.outbound.signers.ring)
            refuse_root(site, self.config.root, self.run_as)
            await self.listeners.sync(site, self.config.root)
            if self.run_as is not None:
                drop_privileges(self.run_as)
            check_data_root(self.data_root)
            # Taken as the user the server runs as, before anything in the data root
            # is touched: the spool, the state files, the control socket.
            self._lock_fd = self._lock()
            report = await asyncio.to_thread(self.spool.open)
            # The dummy hash exists before the first login, or that one would be slower.
            await asyncio.to_thread(passwords.warm_up)
            if site.authentication.verify:
                await asyncio.to_thread(trust_inbound.warm_up)
            log.info("spool opened %s", report)
            self.agent.poll_seconds = float(site.delivery.queue_poll_seconds)
            self._tasks.append(asyncio.create_task(self.agent.run(), name="mta"))
            self._tasks.append(asyncio.create_task(self.delivery.run(), name="delivery"))
            self._tasks.append(asyncio.create_task(self.outbound.run(), name="outbound"))
            self.control = await channel.serve(
                channel.socket_path(self.data_root), self.handle_control
            )
        except BaseException as exc:
            await self._abort_start(report)
            if isinstance(exc, OSError):
                raise StartError(
                    f"cannot start: {exc.strerror or exc} ({exc.filename or self.data_root})"
                ) from exc
            raise
        self.agent.kick()
        self.delivery.kick()
        self.outbound.kick()
        self.started.set()

    def _lock(self) -> int:
        """The data root for this server alone (control/lock.py); StartError when taken."""
        try:
            return lock.acquire(self.data_root)
        except lock.Busy as exc:
            who = f"pid {exc.pid}" if exc.pid else "another process"
            raise StartError(
                f"another `mailplat serve` ({who}) uses the data root {self.data_root}: "
                "stop it first, or give this server its own --data"
            ) from None
        except OSError as exc:
            raise StartError(
                f"cannot lock the data root {self.data_root}: {exc.strerror or exc}"
            ) from exc

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    async def _abort_start(self, report: RecoveryReport | None) -> None:
        """Undo a start that failed half way: close what was opened, in reverse."""
        if self.control is not None:
            self.control.close()
            self.control = None
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.listeners.stop_all()
        # close() leaves the clean-stop marker, so the next start does not take
        # this failed one for a crash. If this open itself found a crash, the
        # marker goes again: the records it flagged must stay flagged next time.
        if self._lock_fd >= 0:  # the spool is ours only while we hold the lock
            self.spool.close()
            self._save_state()
        if report is not None and report.after_crash:
            (self.spool.root / CLEAN_STOP).unlink(missing_ok=True)
        self._unlock()

    def bound(self) -> list[Bound]:
        return self.listeners.bound()

    def port(self, kind: str) -> int:
        """The first bound port of a listener kind (tests bind port 0)."""
        return next(b.port for b in self.bound() if b.kind == kind)

    # -- live reconfiguration ----------------------------------------------------------

    async def reload(self, by: str) -> dict[str, Any]:
        """Load, check, plan and apply the site folder; swap it in only when all passed.

        One reload at a time. The load runs in a worker thread (a big site takes
        a moment to parse) while sessions carry on with the config they have.
        """
        async with self._reload_lock:
            started = time.monotonic()
            try:
                done, stamp = await asyncio.to_thread(self._reconcile, by)
            except ConfigRefused as exc:
                self.last_rejected = {
                    "at": now_iso(),
                    "by": by,
                    "error": str(exc),
                    "errors": exc.errors,
                }
                log.error("reload refused by=%s why=%s", by, exc)
                for line in exc.errors:
                    log.error("reload error %s", line)
                return {"ok": False, "error": str(exc), "errors": exc.errors}
            except MailplatError as exc:
                log.error("reload failed by=%s why=%s", by, exc)
                return {"ok": False, "error": str(exc), "errors": []}
            # The swap: one assignment each; sessions keep the snapshot they started with.
            self.config = done.config
            self._directory = done.directory
            self._remember(done.directory)
            self.throttle.limits = login_limits(done.config.site)
            self._configure_pop3(done.config.site)
            warnings: list[str] = []
            if stamp != self._tls_stamp:
                # A renewed certificate (or new TLS settings): new handshakes use it.
                warnings = self.listeners.reload_certificates()
                self._tls_stamp = stamp
            for path in sorted(self.outbound.signers.ring.kept):
                line = (
                    f"DKIM key {path} is no longer readable by this process: signing with the "
                    "key read at start; make it readable by the server's user (chgrp USER FILE "
                    "&& chmod 640 FILE) so a rotated key reaches the server"
                )
                log.warning("reload dkim-kept %s", line)
                warnings.append(line)
            listener_errors: list[str] = []
            try:
                changed = await self.listeners.sync(done.config.site, done.config.root)
            except BindError as exc:
                # The listeners stay as they were (sync is all or nothing); the rest
                # of the change is live. Said in the log and in apply's answer.
                changed = []
                listener_errors.append(str(exc))
                log.error("reload listener-failed by=%s why=%s", by, exc)
                # `status` shows it as the last thing refused, which it is.
                self.last_rejected = {
                    "at": now_iso(),
                    "by": by,
                    "error": f"listeners unchanged: {exc}",
                    "errors": [str(exc)],
                }
            self.generation = done.result.generation
            if done.result.written:
                self._applied = done.result.generation  # with its snapshot, for the next diff
            elapsed = (time.monotonic() - started) * 1000
            log.info(
                "reload applied by=%s generation=%d changes=%d files_parsed=%d incremental=%s "
                "ms=%.1f",
                by,
                self.generation.number,
                len(done.plan.changes),
                done.parsed_files,
                done.incremental,
                elapsed,
            )
            for line in changed:
                log.info("reload listener %s", line)
            return {
                "ok": True,
                "generation": self.generation.number,
                "digest": self.generation.digest,
                "written": done.result.written,
                "changes": [f"{c.action} {c.kind} {c.name}" for c in done.plan.changes],
                "created": list(done.result.created),
                "listeners": changed,
                "listener_errors": listener_errors,
                "warnings": warnings,
                "files_parsed": done.parsed_files,
                "incremental": done.incremental,
                "ms": round(elapsed, 1),
            }

    def _reconcile(self, by: str) -> tuple[Reconciled, tuple[Any, ...]]:
        """The worker thread's whole share of a reload, in one hop off the event loop.

        The certificates are loaded again only when a TLS file or setting
        changed: every reload of a busy server otherwise re-reads and parses
        each key, and each extra hop to a thread waits for the event loop's
        turn with the GIL.
        """
        done = reconcile(
            self.config.root,
            self.data_root,
            self.load_cache,
            by,
            self._applied,
            self._directory,
        )
        stamp = tls_stamp(done.config.site, done.config.root)
        if stamp != self._tls_stamp:
            tls_errors = check_tls(done.config.site, done.config.root, self.listeners.loaded())
            if tls_errors:
                raise ConfigRefused("a TLS certificate cannot be loaded", tls_errors)
        key_errors = check_dkim_keys(done.config, self.outbound.signers.ring)
        if key_errors:
            raise ConfigRefused(
                "a DKIM key cannot be loaded", [str(d).split("\n")[0] for d in key_errors]
            )
        return done, stamp

    def status(self) -> dict[str, Any]:
        gen = self.generation
        return {
            "ok": True,
            "pid": os.getpid(),
            "site": self.config.name,
            "site_dir": str(self.config.root),
            "data_root": str(self.data_root),
            "generation": gen.number if gen else None,
            "digest": gen.digest if gen else self.config.digest,
            "applied_at": gen.applied_at if gen else None,
            "applied_by": gen.applied_by if gen else None,
            "running_digest": self.config.digest,
            "uptime_seconds": round(time.monotonic() - self._started_at, 1),
            "listeners": [f"{b.kind} {b.host}:{b.port}" for b in self.bound()],
            "queues": self.spool.stats(),
            "last_rejected": self.last_rejected,
        }

    def _serves(self, site: str) -> bool:
        return os.path.realpath(site) == os.path.realpath(self.config.root)

    async def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """The control socket's commands."""
        cmd = request.get("cmd")
        if cmd == "status":
            return self.status()
        if cmd == "apply":
            site = request.get("site")
            if site and not self._serves(str(site)):
                return {
                    "ok": False,
                    "error": f"this server serves {self.config.root}, not {site}",
                    "errors": [],
                }
            return await self.reload(str(request.get("by") or "control"))
        if str(cmd).startswith(("queue-", "badmail-")):
            return await queue_control.handle(self, request)
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    async def serve_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let sessions finish, cancel what remains (once; again is a no-op)."""
        if self._stopped:
            return
        self._stopped = True
        if self.control is not None:
            self.control.close()
            self.control = None
        await self.listeners.stop_all()
        deadline = asyncio.get_running_loop().time() + grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gate.idle.wait(), grace)
        # Sessions still open after the grace period are told 421 4.3.2 and closed.
        self.gate.stop_idle()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gate.idle.wait(), 1.0)
        # Flush in flow order: the agent routes what the last sessions handed
        # over, then delivery empties its queue. Workers stop between messages,
        # never inside a spool write; only past the deadline are they cancelled,
        # and what is left then stays durable in the spool for the next start.
        workers: list[Worker] = [
            self.agent,
            self.delivery,
            self.outbound,
        ]
        for task, worker in zip(self._tasks, workers, strict=True):
            worker.request_stop()
            left = max(0.5, deadline - asyncio.get_running_loop().time())
            done, _ = await asyncio.wait({task}, timeout=left)
            if not done:
                log.info("stop: %s did not finish in time; the rest stays queued", task.get_name())
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        await self.spool.aclose()
        self._save_state()
        self._unlock()
        log.info("stopped")

    def _save_state(self) -> None:
        """Runtime state saved lazily (at most once a second) is saved now."""
        self.logins.close()
        for memory in (self.gate.bans, self.pop_memory, self.delivery.replied):
            memory.flush()


def raise_open_files() -> None:
    """Let the process use as many file descriptors as it may: every connection is one.

    The connection limits (smtp.*, pop3.*) are what bound them; the soft limit
    (often 1024) must not be reached first, or accept() fails with no reply.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def tls_stamp(site: Site, root: Path) -> tuple[Any, ...]:
    """What the TLS contexts were loaded from: each pair's paths, times and sizes."""
    out: list[Any] = []
    for pair in sorted({s.tls for s in specs(site, root) if s.tls}):
        for path in pair:
            try:
                st = path.stat()
                out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((str(path), None))
    return tuple(out)


def loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's last-resort handler: what a peer causes is one line, no traceback.

    Transports report a peer's broken connection or TLS record here; those are
    the network's doing. Anything else is a bug of ours and keeps its trace.
    """
    exc = context.get("exception")
    if isinstance(exc, OSError | EOFError):
        peer = ""
        transport = context.get("transport")
        if transport is not None:
            with contextlib.suppress(Exception):
                info = transport.get_extra_info("peername")
                peer = str(info[0]) if info else ""
        log.info(
            "connection-error peer=%s why=%s: %s",
            peer or "-",
            context.get("message", "error"),
            exc.__class__.__name__,
        )
        return
    log.error("event-loop-error %s", context.get("message", "unhandled"), exc_info=exc)
