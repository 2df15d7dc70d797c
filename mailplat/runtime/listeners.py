"""The set of listening sockets a site declares, kept in step with each reload.

Each bind is keyed by (protocol, host, configured port). sync(site) starts the
binds that are new and stops the ones that are gone; a bind that stays is not
touched, so its sessions never notice a reload. TLS contexts are shared per
(cert, key) pair and reloaded in place (load_cert_chain on the live context),
so a renewed certificate is used by the next handshake on every listener
without rebinding anything.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailplat.config.models.base import split_host_port
from mailplat.config.models.site import Listener, Site
from mailplat.connectors.smtp_in.listener import ConnectionGate, SmtpListener
from mailplat.core.errors import MailplatError
from mailplat.runtime.tls import server_context
from mailplat.services.pop3.listener import Pop3Server

log = logging.getLogger("mailplat.server")

SMTP_KINDS = ("smtp", "submission", "smtps")
POP_KINDS = ("pop3", "pop3s")
DEFAULT_PORTS = {"smtp": 25, "submission": 587, "smtps": 465, "pop3": 110, "pop3s": 995}

Key = tuple[str, str, int]


class BindError(MailplatError):
    """A listener could not bind; the message says which, why and what to change."""


def bind_error(kind: str, host: str, port: int, exc: OSError) -> BindError:
    """One line for an admin: the address, the reason and the fix."""
    where = f"cannot listen on {host}:{port} for {kind}"
    setting = f"listeners.{kind}.bind in site.yaml"
    if exc.errno == errno.EADDRINUSE:
        why = (
            "the address is already in use; stop what listens there "
            f"(`ss -ltnp 'sport = :{port}'` shows it) or change {setting}"
        )
    elif exc.errno == errno.EACCES:
        why = (
            "permission denied: ports below 1024 need root; start as root with server.user "
            f"set (it drops root after binding), or use a port above 1023 in {setting}"
        )
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = f"{host} is not an address of this host; change {setting}"
    else:
        why = f"{exc.strerror or exc}; check {setting}"
    return BindError(f"{where}: {why}")


@dataclass(frozen=True)
class Bound:
    """A listener that is up: protocol, host, port."""

    kind: str
    host: str
    port: int


@dataclass(frozen=True)
class Spec:
    kind: str
    host: str
    port: int
    tls: tuple[Path, Path] | None
    auth_requires_tls: bool

    @property
    def key(self) -> Key:
        return (self.kind, self.host, self.port)


def specs(site: Site, root: Path) -> list[Spec]:
    """Every bind the site declares, alternate ports included."""
    out: list[Spec] = []
    for kind in (*SMTP_KINDS, *POP_KINDS):
        listener: Listener = getattr(site.listeners, kind)
        if not listener.enabled:
            continue
        tls = (root / listener.tls.cert, root / listener.tls.key) if listener.tls else None
        for bind in listener.bind:
            host, port = split_host_port(bind, DEFAULT_PORTS[kind])
            assert port is not None
            ports = [port, listener.alternate_port] if listener.alternate_port else [port]
            out.extend(Spec(kind, host, p, tls, listener.auth_requires_tls) for p in ports)
    return out


def check_tls(
    site: Site, root: Path, loaded: frozenset[tuple[Path, Path]] = frozenset()
) -> list[str]:
    """Errors loading any certificate the site names (checked before a reload swaps).

    A pair the running server has already loaded (`loaded`) that this process
    may no longer read (it dropped root: server.user) is no error: the server
    keeps the certificate it has, and reload_certificates says so.
    """
    errors = []
    for pair in sorted({s.tls for s in specs(site, root) if s.tls}):
        missing = [str(p) for p in pair if not p.is_file()]
        if missing:
            errors.append(f"TLS file(s) not found: {', '.join(missing)}")
            continue
        try:
            server_context(*pair)
        except PermissionError:
            if pair not in loaded:
                errors.append(f"TLS certificate {pair[0]} / key {pair[1]}: {_unreadable()}")
        except (OSError, ssl.SSLError) as exc:
            errors.append(f"TLS certificate {pair[0]} / key {pair[1]}: {exc}")
    return errors


def _unreadable() -> str:
    try:
        who = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        who = str(os.geteuid())
    return (
        f"not readable by user {who}: make the files readable by it "
        f"(chgrp {who} FILE && chmod 640 FILE) so renewed certificates reach the server"
    )


class ListenerSet:
    """SMTP listeners and the POP3 server's binds of one running server."""

    def __init__(
        self,
        smtp_context: Any,
        gate: ConnectionGate,
        pop3_factory: Callable[[], Pop3Server],
    ) -> None:
        self._smtp_context = smtp_context
        self._gate = gate
        self._pop3_factory = pop3_factory
        self.pop3: Pop3Server | None = None
        self._smtp: dict[Key, SmtpListener] = {}
        self._pop: dict[Key, Bound] = {}
        self._contexts: dict[tuple[Path, Path], ssl.SSLContext] = {}

    def _context(self, pair: tuple[Path, Path] | None) -> ssl.SSLContext | None:
        if pair is None:
            return None
        ctx = self._contexts.get(pair)
        if ctx is None:
            ctx = self._contexts[pair] = server_context(*pair)
        return ctx

    def loaded(self) -> frozenset[tuple[Path, Path]]:
        """The certificate pairs the listeners use now."""
        return frozenset(self._contexts)

    def reload_certificates(self) -> list[str]:
        """Load every certificate again into its live context (new handshakes use it).

        A pair this process cannot read any more keeps the certificate it has;
        what it could not renew is returned (and logged) for the admin.
        """
        kept = []
        for (cert, key), ctx in self._contexts.items():
            try:
                ctx.load_cert_chain(str(cert), str(key))
            except (OSError, ssl.SSLError) as exc:
                why = _unreadable() if isinstance(exc, PermissionError) else str(exc)
                line = f"certificate {cert} not renewed (the old one stays): {why}"
                log.warning("reload tls-kept %s", line)
                kept.append(line)
        return kept

    async def sync(self, site: Site, root: Path) -> list[str]:
        """Start new binds, then stop removed ones; what changed, as log-ready text.

        All or nothing: when a new bind fails (BindError), the binds this call
        started are stopped again and the removed ones were never touched, so a
        refused reload leaves the listeners exactly as they were.
        """
        wanted = {s.key: s for s in specs(site, root)}
        gone = [k for k in (*self._smtp, *self._pop) if k not in wanted]
        changed: list[str] = []
        started: list[Key] = []
        try:
            for key, spec in wanted.items():
                if key in self._smtp or key in self._pop:
                    continue
                # The same address under another kind (smtp -> submission): free it first.
                for old in [k for k in gone if k[1:] == key[1:]]:
                    changed.append(await self._stop(old))
                    gone.remove(old)
                changed.append(await self._start(key, spec))
                started.append(key)
        except BindError:
            for key in started:
                await self._stop(key)
            raise
        for key in gone:
            changed.append(await self._stop(key))
        return changed

    async def _start(self, key: Key, spec: Spec) -> str:
        if spec.kind in SMTP_KINDS:
            smtp = SmtpListener(
                spec.kind,
                spec.host,
                spec.port,
                self._smtp_context,
                self._gate,
                self._context(spec.tls),
                spec.auth_requires_tls,
            )
            try:
                await smtp.start()
            except OSError as exc:
                raise bind_error(spec.kind, spec.host, spec.port, exc) from exc
            self._smtp[key] = smtp
            return f"started {spec.kind} {smtp.host}:{smtp.port}"
        if self.pop3 is None:
            self.pop3 = self._pop3_factory()
        tls = self._context(spec.tls)
        try:
            if spec.kind == "pop3s":
                port = await self.pop3.start(spec.host, spec.port, ssl_context=tls)
            else:
                port = await self.pop3.start(spec.host, spec.port, starttls_context=tls)
        except OSError as exc:
            raise bind_error(spec.kind, spec.host, spec.port, exc) from exc
        self._pop[key] = Bound(spec.kind, spec.host, port)
        log.info("listening protocol=%s address=%s:%d", spec.kind, spec.host, port)
        return f"started {spec.kind} {spec.host}:{port}"

    async def _stop(self, key: Key) -> str:
        listener = self._smtp.pop(key, None)
        if listener is not None:
            await listener.stop()
            return f"stopped {key[0]} {listener.host}:{listener.port}"
        bound = self._pop.pop(key)
        if self.pop3 is not None:
            await self.pop3.stop_listening(bound.port)
        return f"stopped {key[0]} {bound.host}:{bound.port}"

    def bound(self) -> list[Bound]:
        smtp = [Bound(s.kind, s.host, s.port) for s in self._smtp.values()]
        return smtp + list(self._pop.values())

    async def stop_all(self) -> None:
        for listener in self._smtp.values():
            await listener.stop()
        self._smtp.clear()
        if self.pop3 is not None:
            await self.pop3.stop()
        self._pop.clear()
