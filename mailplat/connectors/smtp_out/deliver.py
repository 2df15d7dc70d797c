"""Outbound delivery: "smtp" queue records -> remote mail servers, retried, bounced, reported.

Flow. The run loop takes the records that are due (by the Clock), claims
them, and splits each record's recipients by Destination (route.py: MX of the
domain, or a smart host). Items (one record's recipients for one
destination) go into a per-destination queue served by "lanes": a lane holds
one connection at a time and sends item after item over it, so several
messages to one destination share a connection. At most per_destination
lanes serve a destination and at most `concurrency` lanes hold connections
overall. A fresh connection tries every MX host (preference order) and every
address of each before the item is deferred; when all fail, the rest of that
lane's items are deferred at once instead of waiting out the same timeouts.

Results. Per recipient (client.py): delivered, deferred (4xx, no
connection, DNS trouble) or failed (5xx, NXDOMAIN, null MX, too big). When
every destination of a record has answered, the record is settled once:
- nothing left to retry: done, with one DSN for the failures;
- still deferred: the record is rewritten with only the deferred recipients,
  attempts+1, next_try from the retry ladder, and last-error in meta; a
  delay notice goes out when policy.py says so;
- deferred past lifetime_hours or max_retries: moved to "badmail" with the
  reason in meta, and the sender gets one DSN.
A message from the null sender is never answered (RELIABILITY.md §8), nor is
any message when no_ndr is on: its failed recipients are kept on the record
(meta `failed:<rcpt>`) and end up in badmail, where an admin can see them.

Damage. A record whose record or message file is damaged on disk (checked
when it is claimed, before any lane sees it) is quarantined once by the
spool, which logs it and leaves the sender's notice to the MTA agent; it is
never retried.

TLS policy. Opportunistic STARTTLS by default. With delivery.dane, an MX
host whose TLSA records come DNSSEC-validated must offer TLS with a
certificate that fits them; with delivery.mta_sts, a domain's enforce
policy limits delivery to the MX hosts it names, over TLS with a valid
certificate for the host name. Either failing defers (4.7.5) and tries the
next host: never plaintext.

Signing. A message from one of our domains that declares `dkim:` is signed
just before its first attempt, after every header change (trust/signing.py
picks the domain); the signed bytes are shared by all its destinations. A
declared key that cannot be read defers the message (4.7.0), never sends it
unsigned.

Durability. DSNs are injected (fsynced into the spool) before the record is
rewritten or removed, and the record is rewritten only after the remote's
reply. A crash anywhere repeats work (a duplicate delivery or notice, logged
as possible) and never loses a recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mailplat.config.directory import Directory
from mailplat.config.models.site import Site, SmartHostAuth
from mailplat.connectors.smtp_out import policy
from mailplat.connectors.smtp_out.client import (
    ClientOptions,
    Credentials,
    Kind,
    Outcome,
    Session,
    SessionError,
    TlsPolicy,
    local_outcome,
    open_session,
)
from mailplat.connectors.smtp_out.route import Destination, destination_for
from mailplat.core.clock import Clock, SystemClock
from mailplat.core.envelope import Envelope
from mailplat.core.worker import Worker
from mailplat.dns.resolver import DnsError, DnsTemporary, Resolver
from mailplat.message import dsn
from mailplat.spool import history
from mailplat.spool.api import Damaged, SpoolBackend
from mailplat.spool.faults import fault
from mailplat.trust import dane, mtasts
from mailplat.trust.signing import KeyProblem, Signers

log = logging.getLogger("mailplat.outbound")

QUEUE = "smtp"
BADMAIL = "badmail"
WINDOW = 256
HELD = "failed:"  # meta prefix: a recipient that failed while the sender may not be told
LAST_ERROR = "last-error"
LAST_ATTEMPT = "last-attempt"
ERROR_RETRY_SECONDS = 60.0
# DANE checks the certificate against TLSA records, not against a CA.
_OPPORTUNISTIC = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_OPPORTUNISTIC.check_hostname = False
_OPPORTUNISTIC.verify_mode = ssl.CERT_NONE

Inject = Callable[[Envelope, bytes], Awaitable[str]]


@dataclass
class _Work:
    """A claimed record while its destinations are being tried."""

    record_id: str
    env: Envelope
    msg_id: str
    left: int = 0
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    signed: bytes | None = None  # the message with its DKIM signatures, made once


@dataclass
class _Item:
    """One record's recipients for one destination."""

    work: _Work
    rcpts: list[str]


@dataclass
class _DestQueue:
    """Items waiting for one destination, and how many lanes serve it."""

    dest: Destination
    items: deque[_Item] = field(default_factory=deque)
    lanes: int = 0


@dataclass
class _Lane:
    """What one lane learned about its destination during its life."""

    session: Session | None = None
    hosts: list[str] | None = None
    dead: Outcome | None = None  # every host failed: defer the rest without trying
    sts: mtasts.Policy | None = None  # the destination's MTA-STS policy, looked up once


class OutboundDelivery(Worker):
    """Consumes the "smtp" queue; same shape as LocalDelivery (kick, run, drain, stop)."""

    def __init__(
        self,
        spool: SpoolBackend,
        directory: Callable[[], Directory],
        inject: Inject,
        clock: Clock | None = None,
        dns_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.spool = spool
        self.directory = directory
        self.inject = inject
        self.clock: Clock = clock or SystemClock()
        self.dns_timeout = dns_timeout
        self._queues: dict[str, _DestQueue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem: asyncio.Semaphore | None = None
        self._sem_size = 0
        self._resolver: Resolver | None = None
        self._resolver_key: tuple[tuple[str, ...], float] | None = None
        self.signers = Signers()
        self.mta_sts = mtasts.MtaSts()
        self.delivered = 0
        self.bounced = 0
        self.deferred = 0

    # -- public shape ------------------------------------------------------------

    async def run(self) -> None:
        try:
            while not self.stopping:
                try:
                    await self._dispatch()
                except Exception:
                    # A spool error must not end outbound delivery for good:
                    # log it and look again at the next wake-up.
                    log.exception("outbound dispatch failed; retrying at the next poll")
                await self.wait_for_kick(self._sleep_seconds())
            await self._idle()
        finally:
            # Cancelled past the stop deadline: the lanes go too; their records
            # were never rewritten, so they are retried at the next start.
            for task in list(self._tasks):
                task.cancel()

    async def drain(self) -> None:
        """Try everything due now and wait until every attempt is settled (tests, CLI)."""
        while True:
            started = await self._dispatch()
            await self._idle()
            if not started:
                return

    # -- scheduling --------------------------------------------------------------

    def _sleep_seconds(self) -> float:
        poll = float(self.directory().site.delivery.queue_poll_seconds)
        due = self.spool.next_due(QUEUE)
        if due is None:
            return poll
        return min(poll, max(0.05, due - self.clock.now()))

    async def _idle(self) -> None:
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _semaphore(self, site: Site) -> asyncio.Semaphore:
        size = site.delivery.concurrency
        if self._sem is None or size != self._sem_size:
            # A reload changed the limit: new lanes use the new one; lanes
            # already running finish under the old one.
            self._sem = asyncio.Semaphore(size)
            self._sem_size = size
        return self._sem

    def resolver(self, site: Site) -> Resolver:
        key = (tuple(site.server.dns_servers), self.dns_timeout)
        if self._resolver is None or key != self._resolver_key:
            self._resolver = Resolver(site.server.dns_servers, timeout=self.dns_timeout)
            self._resolver_key = key
        return self._resolver

    async def _dispatch(self) -> int:
        """Claim due records and hand their recipients to destination lanes; how many."""
        if self.stopping:
            return 0
        directory = self.directory()
        if directory.site.delivery.hold:
            return 0  # delivery.hold: everything waits in its queue
        due = self.spool.due(QUEUE, self.clock.now(), WINDOW)
        batch = [r for r in due if self.spool.claim(QUEUE, r)]
        started = 0
        for rid in batch:
            try:
                env, msg_id = self.spool.read_record(QUEUE, rid)
                # Read here, once: damage shows now instead of in every lane, and
                # the copy read stays cached for the lanes and the settling.
                self.spool.read_message(msg_id)
            except Damaged as exc:
                await self.spool.quarantine_record(QUEUE, rid, exc)
                self.spool.release(QUEUE, rid)
                continue
            except Exception:
                # Unreadable: set it aside where an admin looks, instead of
                # failing on it at every poll.
                log.exception(
                    "outbound unreadable id=%s record=%s; moved to badmail",
                    rid.rsplit(".", 1)[0],
                    rid,
                )
                await self.spool.move(QUEUE, rid, BADMAIL)
                self.spool.release(QUEUE, rid)
                continue
            if self.spool.possible_duplicate(QUEUE, rid):
                log.warning(
                    "outbound possible-duplicate id=%s record=%s rcpts=%s "
                    "(queued before a crash; a remote may have it already)",
                    env.trace_id,
                    rid,
                    ",".join(env.rcpts),
                )
            work = _Work(rid, env, msg_id)
            groups: dict[str, tuple[Destination, list[str]]] = {}
            for rcpt in env.rcpts:
                dest = destination_for(directory, rcpt)
                groups.setdefault(dest.key, (dest, []))[1].append(rcpt)
            if not groups:
                await self.spool.done(QUEUE, rid)
                self.spool.release(QUEUE, rid)
                continue
            work.left = len(groups)
            for key, (dest, rcpts) in groups.items():
                queue = self._queues.setdefault(key, _DestQueue(dest))
                queue.dest = dest  # the current config's view (auth may have changed)
                queue.items.append(_Item(work, rcpts))
            started += 1
        limit = directory.site.delivery.per_destination
        for queue in list(self._queues.values()):
            while queue.lanes < min(limit, len(queue.items)):
                queue.lanes += 1
                task = asyncio.create_task(self._lane(queue), name=f"outbound {queue.dest.key}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return started

    # -- one lane: one connection at a time to one destination ----------------------

    async def _lane(self, queue: _DestQueue) -> None:
        lane = _Lane()
        try:
            async with self._semaphore(self.directory().site):
                while queue.items and not self.stopping:
                    item = queue.items.popleft()
                    try:
                        outcomes = await self._deliver(lane, queue.dest, item)
                    except Exception as exc:
                        log.exception(
                            "outbound error id=%s dest=%s", item.work.env.trace_id, queue.dest.key
                        )
                        oops = local_outcome("deferred", "4.3.0", f"internal error: {exc}")
                        outcomes = dict.fromkeys(item.rcpts, oops)
                    if any(o.kind == "delivered" for o in outcomes.values()):
                        # Crash test point: the remote has the message, the spool
                        # does not know yet; a restart must send it again.
                        fault("outbound.remote-accepted")
                    await self._record(item, outcomes)
        finally:
            queue.lanes -= 1
            task = asyncio.current_task()
            cancelled = task is not None and task.cancelling() > 0
            if lane.session is not None:
                if cancelled:
                    lane.session.smtp.close()  # no QUIT: we are being torn down
                else:
                    await lane.session.close()
            if queue.lanes == 0 and not cancelled:
                if self._queues.get(queue.dest.key) is queue and not queue.items:
                    del self._queues[queue.dest.key]
                elif self.stopping:
                    await self._skip_rest(queue)

    async def _skip_rest(self, queue: _DestQueue) -> None:
        """Stopping: items nobody will try now keep their recipients, no attempt counted."""
        skipped = local_outcome("skipped", "4.3.2", "not attempted: server shutting down")
        while queue.items:
            item = queue.items.popleft()
            await self._record(item, dict.fromkeys(item.rcpts, skipped))
        self._queues.pop(queue.dest.key, None)

    async def _record(self, item: _Item, outcomes: dict[str, Outcome]) -> None:
        work = item.work
        work.outcomes.update(outcomes)
        for rcpt in item.rcpts:
            out = outcomes[rcpt]
            if out.kind != "skipped":
                log.info(
                    "outbound %s id=%s rcpt=%s status=%s reply=%s",
                    out.kind,
                    work.env.trace_id,
                    rcpt,
                    out.status,
                    out.text,
                )
        work.left -= 1
        if work.left == 0:
            await self._finish(work)

    async def _deliver(self, lane: _Lane, dest: Destination, item: _Item) -> dict[str, Outcome]:
        """Send one item: over the lane's connection, else through a fresh one."""
        site = self.directory().site
        env = item.work.env
        rcpts = item.rcpts
        try:
            data = self._signed(item.work)
        except KeyProblem as exc:
            # Unsigned mail from a domain that signs would fail DMARC: wait for the key.
            log.error("outbound dkim-key id=%s why=%s", env.trace_id, exc)
            return dict.fromkeys(rcpts, local_outcome("deferred", "4.7.0", str(exc)))
        limit_kb = site.delivery.max_outbound_size_kb
        if limit_kb and len(data) > limit_kb * 1024:
            too_big = local_outcome(
                "failed",
                "5.3.4",
                f"message size {len(data)} exceeds the outbound limit of {limit_kb} KB",
            )
            return dict.fromkeys(rcpts, too_big)
        if lane.dead is not None:
            return dict.fromkeys(rcpts, lane.dead)
        if lane.session is not None and lane.session.alive:
            try:
                return await lane.session.send(env.mail_from, rcpts, data)
            except SessionError as exc:
                # The kept connection went bad between messages: start afresh.
                log.info("outbound reconnect dest=%s why=%s", dest.key, exc)
            await lane.session.close()
            lane.session = None
        try:
            opts = self._options(site, dest)
            hosts = await self._hosts(lane, dest, site)
        except DnsError as exc:
            kind: Kind = "deferred" if exc.temporary else "failed"
            lane.dead = local_outcome(kind, exc.status, str(exc))
            return dict.fromkeys(rcpts, lane.dead)
        except SessionError as exc:
            lane.dead = local_outcome("deferred", exc.status, str(exc))
            return dict.fromkeys(rcpts, lane.dead)
        resolver = self.resolver(site)
        last: str | None = None
        status = "4.4.1"
        if lane.sts is not None and lane.sts.mode == "enforce":
            # RFC 8461 §4.1: only the MX hosts the policy names.
            allowed = [h for h in hosts if lane.sts.matches(h)]
            if not allowed:
                lane.dead = local_outcome(
                    "deferred", "4.7.5", f"{dest.label}: no MX host matches its MTA-STS policy"
                )
                return dict.fromkeys(rcpts, lane.dead)
            hosts = allowed
        for host in hosts:
            try:
                if dest.relay:
                    ips = await resolver.host_addresses(host)
                else:
                    ips = await resolver.addresses(host)
                host_opts = await self._tls_for(site, lane, dest, host, opts)
            except DnsTemporary as exc:
                last, status = str(exc), exc.status
                continue
            if not ips:
                log.info("outbound skip host=%s dest=%s why=no address", host, dest.key)
            for ip in ips:
                try:
                    session = await self._connect(host, ip, dest.port, host_opts)
                except SessionError as exc:
                    log.info("outbound connect-failed dest=%s why=%s", dest.key, exc)
                    last, status = str(exc), exc.status
                    continue
                try:
                    outcomes = await session.send(env.mail_from, rcpts, data)
                except SessionError as exc:
                    log.info("outbound session-failed dest=%s why=%s", dest.key, exc)
                    last, status = str(exc), exc.status
                    await session.close()
                    continue
                lane.session = session
                return outcomes
        if last is None:
            # Every MX host exists in name only: RFC 5321 §5.1 has nowhere to send.
            gone = local_outcome("failed", "5.4.4", f"{dest.label}: no MX host has an address")
            lane.dead = gone
        else:
            lane.dead = local_outcome("deferred", status, last)
        return dict.fromkeys(rcpts, lane.dead)

    def _signed(self, work: _Work) -> bytes:
        """The message as it goes on the wire: DKIM-signed as the very last step, once."""
        if work.signed is None:
            data = self.spool.read_message(work.msg_id)
            signer = self.signers.for_message(self.directory(), work.env.mail_from, data)
            work.signed = data if signer is None else signer.sign(data)
        return work.signed

    async def _hosts(self, lane: _Lane, dest: Destination, site: Site) -> list[str]:
        if lane.hosts is None:
            lane.hosts = [dest.domain] if dest.relay else await self.resolver(site).mx(dest.domain)
            if not dest.relay and site.delivery.mta_sts.enabled:
                lane.sts = await self.mta_sts.policy(
                    self.resolver(site),
                    dest.domain,
                    ca_file=self._ca_file(site),
                    fetch_seconds=site.delivery.mta_sts.fetch_timeout_seconds,
                )
        return lane.hosts

    def _ca_file(self, site: Site) -> Path | None:
        ca = site.delivery.mta_sts.ca_file
        if ca is None:
            return None
        path = Path(ca)
        return path if path.is_absolute() else self.directory().config.root / path

    async def _tls_for(
        self, site: Site, lane: _Lane, dest: Destination, host: str, opts: ClientOptions
    ) -> ClientOptions:
        """The TLS one MX host must offer: DANE first (RFC 8461 §2), then MTA-STS enforce."""
        if dest.relay:
            return opts
        if site.delivery.dane:
            tlsa = await dane.lookup(self.resolver(site), dest.domain, host, dest.port)
            if tlsa is not None:
                check = None
                if tlsa.authenticates:

                    def check(der: bytes, tlsa: dane.Tlsa = tlsa) -> bool:
                        return dane.matches(tlsa, der)

                return replace(opts, tls=TlsPolicy("DANE", _OPPORTUNISTIC, check))
        if lane.sts is not None and lane.sts.mode == "enforce":
            ctx = mtasts.tls_context(self._ca_file(site))
            return replace(opts, tls=TlsPolicy("MTA-STS", ctx))
        return opts

    async def _connect(self, host: str, ip: str, port: int, opts: ClientOptions) -> Session:
        try:
            return await open_session(host, ip, port, opts)
        except SessionError as exc:
            if not exc.tls_failed or opts.tls is not None:
                raise  # a required TLS (MTA-STS, DANE) never falls back to plaintext
            # Opportunistic means plaintext is the fallback when TLS breaks.
            log.info("outbound tls-failed host=%s ip=%s; retrying without TLS", host, ip)
            return await open_session(host, ip, port, replace(opts, starttls=False))

    def _options(self, site: Site, dest: Destination) -> ClientOptions:
        delivery = site.delivery
        creds = self._credentials(dest.auth) if dest.auth is not None else None
        return ClientOptions(
            host_name=site.server.host_name,
            timeout=float(delivery.remote_timeout_seconds),
            bind_ip=delivery.bind_ip,
            credentials=creds,
        )

    def _credentials(self, auth: SmartHostAuth) -> Credentials:
        """The smart host password, read now (so a rotated secret is picked up)."""
        if auth.password_env is not None:
            password = os.environ.get(auth.password_env)
            if password is None:
                raise SessionError(
                    f"smart host password: environment variable {auth.password_env} is not set",
                    "4.7.0",
                )
        else:
            assert auth.password_file is not None
            path = Path(auth.password_file)
            if not path.is_absolute():
                path = self.directory().config.root / path
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise SessionError(f"smart host password: {exc}", "4.7.0") from exc
            password = lines[0].strip() if lines else ""
        return Credentials(auth.username, password, auth.mechanism)

    # -- settling a record once every destination answered --------------------------

    async def _finish(self, work: _Work) -> None:
        try:
            await self._settle(work)
        except Damaged as exc:
            # Damaged between the claim and now (its cached copy was evicted):
            # set aside, not retried; the notice names every recipient of it.
            await self.spool.quarantine_record(QUEUE, work.record_id, exc)
        except Exception:
            log.exception(
                "outbound settle-failed id=%s record=%s; retrying later",
                work.env.trace_id,
                work.record_id,
            )
            with contextlib.suppress(Exception):
                later = replace(work.env, next_try=self.clock.now() + ERROR_RETRY_SECONDS)
                await self.spool.update(QUEUE, work.record_id, later)
        finally:
            self.spool.release(QUEUE, work.record_id)

    async def _settle(self, work: _Work) -> None:
        env = work.env
        outs = dict(work.outcomes)
        if all(outs[r].kind == "skipped" for r in env.rcpts):
            return  # nothing was tried: the record stays exactly as it was
        directory = self.directory()
        delivery = directory.site.delivery
        now = self.clock.now()
        attempts = env.attempts + 1
        delivered = [r for r in env.rcpts if outs[r].kind == "delivered"]
        failed = [r for r in env.rcpts if outs[r].kind == "failed"]
        waiting = [r for r in env.rcpts if outs[r].kind in ("deferred", "skipped")]
        tried = any(outs[r].kind == "deferred" for r in waiting)
        self.delivered += len(delivered)
        tell = bool(env.mail_from) and not delivery.no_ndr
        held = _held(env)
        data = self.spool.read_message(work.msg_id)

        reason = policy.give_up_reason(delivery, env, attempts, now) if tried else None
        expired: list[str] = []
        if reason:
            expired, waiting = waiting, []
            for r in expired:
                # The last reply is the reason, often a 4xx: RFC 3464 allows
                # that with Action: failed.
                out = outs[r]
                if out.kind == "skipped" and env.get(LAST_ERROR):
                    out = replace(out, diagnostic=f"x-mailplat; {env.get(LAST_ERROR)}")
                outs[r] = replace(out, kind="failed")
        given_up = failed + expired
        if given_up:
            self.bounced += len(given_up)
            if tell:
                await self._notify(directory, env, data, given_up, outs)
            else:
                held.update((r, outs[r]) for r in given_up)
                why = "null sender" if not env.mail_from else "no_ndr"
                log.info(
                    "outbound no-bounce id=%s rcpts=%s (%s)", env.trace_id, ",".join(given_up), why
                )
        meta = _set(_with_held(env, held), LAST_ATTEMPT, f"{now:.0f}")
        meta = history.add_attempt(replace(env, meta=meta), now, _results(env, outs)).meta
        first_error = next((outs[r].text for r in [*waiting, *given_up]), "")
        if first_error:
            meta = _set(meta, LAST_ERROR, first_error)

        if waiting:
            self.deferred += len(waiting)
            if policy.wants_delay_notice(delivery, env, now):
                await self._delay_notice(directory, env, data, waiting, outs)
                count = int(env.get(policy.DELAY_NOTIFIED) or 0) + 1
                meta = _set(meta, policy.DELAY_NOTIFIED, str(count))
            next_try = now + policy.retry_delay(delivery, attempts)
            updated = replace(
                env, rcpts=tuple(waiting), attempts=attempts, next_try=next_try, meta=meta
            )
            await self.spool.update(QUEUE, work.record_id, updated)
            log.info(
                "outbound retry id=%s rcpts=%s attempts=%d next_in=%.0fs",
                env.trace_id,
                ",".join(waiting),
                attempts,
                next_try - now,
            )
            return
        # Nothing left to try. Badmail keeps what an admin must see: recipients
        # given up after retries, and failures nobody could be told about.
        parked = list(held) + [r for r in expired if r not in held]
        if not parked:
            await self.spool.done(QUEUE, work.record_id)
            return
        why = reason or "undeliverable"
        if held:
            why += "; the sender was not notified (null sender or no_ndr)"
        meta = _set(_set(meta, "badmail", why), "queue", QUEUE)
        bad = replace(env, rcpts=tuple(parked), attempts=attempts, meta=meta)
        await self.spool.move(QUEUE, work.record_id, BADMAIL, bad)
        log.info("outbound badmail id=%s rcpts=%s why=%s", env.trace_id, ",".join(parked), why)

    async def _notify(
        self,
        directory: Directory,
        env: Envelope,
        data: bytes,
        rcpts: list[str],
        outs: dict[str, Outcome],
    ) -> None:
        statuses = [_status(env, r, outs[r], "failed") for r in rcpts]
        made = dsn.bounce_for(directory, env, data, statuses)
        if made is not None:
            queue_id = await self.inject(*made)
            log.info("outbound bounce id=%s parent=%s to=%s", queue_id, env.trace_id, env.mail_from)

    async def _delay_notice(
        self,
        directory: Directory,
        env: Envelope,
        data: bytes,
        rcpts: list[str],
        outs: dict[str, Outcome],
    ) -> None:
        until = policy.expires_at(directory.site.delivery, env)
        statuses = [
            replace(_status(env, r, outs[r], "delayed"), will_retry_until=until) for r in rcpts
        ]
        made = dsn.bounce_for(directory, env, data, statuses, delayed=True)
        if made is not None:
            queue_id = await self.inject(*made)
            log.info(
                "outbound delay-notice id=%s parent=%s to=%s", queue_id, env.trace_id, env.mail_from
            )


def _status(env: Envelope, rcpt: str, out: Outcome, action: str) -> dsn.RecipientStatus:
    original = env.get(f"orig:{rcpt}")
    status = out.status
    if action == "delayed" and status.startswith("5"):
        status = "4" + status[1:]
    return dsn.RecipientStatus(
        rcpt=rcpt,
        action=action,
        status=status,
        diagnostic=out.diagnostic,
        remote_mta=out.remote_mta,
        original_rcpt=original if original and original != rcpt else "",
    )


def _results(env: Envelope, outs: dict[str, Outcome]) -> list[dict[str, Any]]:
    """One attempt for the record's history: recipients grouped by what happened to them."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for rcpt in env.rcpts:
        out = outs[rcpt]
        if out.kind == "skipped":
            continue
        reply = out.diagnostic.split("; ", 1)[-1]
        groups.setdefault((out.kind, out.remote_mta, reply), []).append(rcpt)
    return [
        {"result": kind, "host": host, "reply": reply, "rcpts": rcpts}
        for (kind, host, reply), rcpts in groups.items()
    ]


def _held(env: Envelope) -> dict[str, Outcome]:
    """Recipients that failed earlier and were kept for badmail (null sender, no_ndr)."""
    out: dict[str, Outcome] = {}
    for key, value in env.meta:
        if key.startswith(HELD):
            status, _, diagnostic = value.partition(" ")
            out[key[len(HELD) :]] = Outcome("failed", status, diagnostic)
    return out


def _with_held(env: Envelope, held: dict[str, Outcome]) -> tuple[tuple[str, str], ...]:
    kept = [(k, v) for k, v in env.meta if not k.startswith(HELD)]
    kept += [(HELD + r, f"{o.status} {o.diagnostic}") for r, o in held.items()]
    return tuple(kept)


def _set(meta: tuple[tuple[str, str], ...], key: str, value: str) -> tuple[tuple[str, str], ...]:
    return (*((k, v) for k, v in meta if k != key), (key, value))
