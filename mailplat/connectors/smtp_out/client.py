"""One outbound SMTP session (aiosmtplib) and the per-recipient outcome of a transaction.

Input: a host name and one of its IPs, the port, our EHLO name, the remote
timeout, an optional bind address and smart-host credentials. open_session()
connects, reads the greeting, says EHLO (HELO if EHLO is refused), upgrades
with STARTTLS when offered (opportunistic: any certificate is accepted, as
RFC 7435 allows, because the alternative is plaintext) and logs in when
credentials are given. A TlsPolicy (MTA-STS enforce, DANE) turns TLS from
opportunistic into required: no STARTTLS, a certificate that fails its check
(PKIX for the MX name, or the TLSA records) is a SessionError (4.7.5) and
never a plaintext retry. Session.send() runs one transaction and returns an
Outcome per recipient: 2xx delivered, 4xx deferred, 5xx failed, with the
remote reply kept for the DSN.

Trouble with the connection itself (refused, timeout, dropped, 421 before
the message was handed over) raises SessionError instead, so the caller tries
the next MX host with the same message. Once the message text has been sent,
a lost connection is a deferral, never a retry elsewhere in the same pass:
the remote may have taken it, and a duplicate is better than a loss but worse
than a wait. aiosmtplib writes the message with CRLF line endings and dot
stuffing, so nothing we emit carries a bare CR or LF (RELIABILITY.md §4).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiosmtplib
from aiosmtplib.response import SMTPResponse

log = logging.getLogger("mailplat.outbound")

Kind = Literal["delivered", "deferred", "failed", "skipped"]
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt did for one recipient.

    `skipped` means not attempted at all (shutting down): the record keeps
    the recipient without counting an attempt.
    """

    kind: Kind
    status: str  # RFC 3463 enhanced code, e.g. 5.1.1
    diagnostic: str  # RFC 3464 Diagnostic-Code: "smtp; 550 5.1.1 ..." or "x-mailplat; ..."
    remote_mta: str = ""

    @property
    def text(self) -> str:
        """One line for logs and the queue's last-error."""
        where = f"{self.remote_mta}: " if self.remote_mta else ""
        return where + self.diagnostic.split("; ", 1)[-1]


def reply_outcome(code: int, message: str, remote_mta: str) -> Outcome:
    """The outcome a remote reply means (2xx delivered, 4xx deferred, else failed)."""
    text = " ".join(message.split())  # multi-line replies become one line
    match = _ENHANCED.match(text)
    first = str(code)[0]
    status = f"{match.group(1)}.{match.group(2)}.{match.group(3)}" if match else f"{first}.0.0"
    if match and match.group(1) != first:
        status = f"{first}.0.0"  # a server contradicting itself: trust the basic code
    kind: Kind = "delivered" if first == "2" else "deferred" if first == "4" else "failed"
    return Outcome(kind, status, f"smtp; {code} {text}".rstrip(), remote_mta)


def local_outcome(kind: Kind, status: str, text: str, remote_mta: str = "") -> Outcome:
    """An outcome we decided ourselves (DNS, size, connection trouble)."""
    return Outcome(kind, status, f"x-mailplat; {' '.join(text.split())}", remote_mta)


class SessionError(Exception):
    """The session is unusable; the message was not handed over (try another host)."""

    def __init__(self, message: str, status: str = "4.4.2", *, tls_failed: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.tls_failed = tls_failed


@dataclass(frozen=True, slots=True)
class Credentials:
    """Smart host login."""

    username: str
    password: str
    mechanism: Literal["LOGIN", "PLAIN"]


@dataclass(frozen=True, slots=True)
class TlsPolicy:
    """TLS a destination demands (MTA-STS enforce or DANE) instead of opportunistic TLS."""

    why: str  # "MTA-STS" or "DANE", for the error a failure gives
    context: ssl.SSLContext  # certificate checking (PKIX for MTA-STS; none for DANE)
    check: Callable[[bytes], bool] | None = None  # DANE: does the peer's certificate fit?


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How we connect: EHLO name, timeout, source address, TLS, login."""

    host_name: str
    timeout: float
    bind_ip: str | None = None
    starttls: bool = True
    credentials: Credentials | None = None
    tls: TlsPolicy | None = None  # None: opportunistic (RFC 7435)


def _tls_context() -> ssl.SSLContext:
    # Opportunistic TLS (RFC 7435): encrypt whenever offered, whatever the
    # certificate; refusing a self-signed one would only mean plaintext.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_TLS = _tls_context()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class Session:
    """A connected, greeted (and maybe encrypted and logged-in) SMTP client."""

    def __init__(self, smtp: aiosmtplib.SMTP, host: str, ip: str) -> None:
        self.smtp = smtp
        self.host = host
        self.ip = ip
        self.sent = 0

    @property
    def name(self) -> str:
        """How the remote appears in logs and DSNs: `host[ip]` or just the IP."""
        return self.ip if self.host == self.ip else f"{self.host}[{self.ip}]"

    @property
    def alive(self) -> bool:
        return self.smtp.is_connected

    @property
    def encrypted(self) -> bool:
        return self.alive and self.smtp.get_transport_info("sslcontext") is not None

    @property
    def size_limit(self) -> int:
        """The remote's SIZE (RFC 1870); 0 when it states none."""
        value = self.smtp.esmtp_extensions.get("size", "")
        return int(value) if value.strip().isdigit() else 0

    async def _command(self, *args: bytes) -> SMTPResponse:
        try:
            reply = await self.smtp.execute_command(*args)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            raise SessionError(f"{self.name}: {_why(exc)}") from exc
        if reply.code == 421:
            # The server is closing the channel (aiosmtplib already closed it).
            raise SessionError(f"{self.name}: {reply.code} {' '.join(reply.message.split())}")
        return reply

    async def send(self, mail_from: str, rcpts: list[str], data: bytes) -> dict[str, Outcome]:
        """One transaction; an Outcome per recipient. Raises SessionError before DATA."""
        remote = self.host
        limit = self.size_limit
        if limit and len(data) > limit:
            # RFC 1870 §6: the server said it will refuse this; do not try.
            out = local_outcome(
                "failed",
                "5.3.4",
                f"message size {len(data)} exceeds the limit {limit} of {self.name}",
                remote,
            )
            return dict.fromkeys(rcpts, out)
        utf8 = not (mail_from.isascii() and all(r.isascii() for r in rcpts))
        if utf8 and not self.smtp.supports_extension("smtputf8"):
            out = local_outcome(
                "failed", "5.6.7", f"{self.name} does not support SMTPUTF8 addresses", remote
            )
            return dict.fromkeys(rcpts, out)
        encoding = "utf-8" if utf8 else "ascii"
        options: list[bytes] = []
        if self.smtp.supports_extension("size"):
            options.append(f"SIZE={len(data)}".encode())
        if self.smtp.supports_extension("8bitmime") and not data.isascii():
            options.append(b"BODY=8BITMIME")
        if utf8:
            options.append(b"SMTPUTF8")
        reply = await self._command(b"MAIL", f"FROM:<{mail_from}>".encode(encoding), *options)
        if reply.code != 250:
            await self._rset()
            return dict.fromkeys(rcpts, reply_outcome(reply.code, reply.message, remote))
        results: dict[str, Outcome] = {}
        accepted: list[str] = []
        for rcpt in rcpts:
            reply = await self._command(b"RCPT", f"TO:<{rcpt}>".encode(encoding))
            results[rcpt] = reply_outcome(reply.code, reply.message, remote)
            if reply.code in (250, 251):
                accepted.append(rcpt)
        if not accepted:
            await self._rset()
            return results
        try:
            reply = await self.smtp.data(data)
        except aiosmtplib.SMTPDataError as exc:
            reply = SMTPResponse(exc.code, exc.message)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            # The text may have reached the server: defer, never re-send elsewhere now.
            self.smtp.close()
            lost = local_outcome(
                "deferred", "4.4.2", f"{self.name}: {_why(exc)} during DATA", remote
            )
            return {r: (lost if r in accepted else results[r]) for r in rcpts}
        self.sent += 1
        final = reply_outcome(reply.code, reply.message, remote)
        return {r: (final if r in accepted else results[r]) for r in rcpts}

    async def _rset(self) -> None:
        """Abandon a refused transaction so the connection can carry the next one."""
        try:
            await self.smtp.execute_command(b"RSET")
        except aiosmtplib.SMTPException:
            self.smtp.close()

    async def close(self) -> None:
        """QUIT politely; whatever the remote does, the socket ends up closed."""
        if self.smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await self.smtp.quit(timeout=5)
        self.smtp.close()


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return "timed out"
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return "connection lost"
    return str(exc) or type(exc).__name__


async def open_session(host: str, ip: str, port: int, opts: ClientOptions) -> Session:
    """Connect, greet, STARTTLS when offered, log in when asked; SessionError on failure."""
    smtp = aiosmtplib.SMTP(
        hostname=ip,
        port=port,
        local_hostname=opts.host_name,
        source_address=(opts.bind_ip, 0) if opts.bind_ip else None,
        timeout=opts.timeout,
        start_tls=False,  # decided below, after we have seen EHLO
        validate_certs=False,
    )
    where = ip if host == ip else f"{host}[{ip}]"
    try:
        await smtp.connect()
        await _greet(smtp)
        policy = opts.tls
        if opts.starttls and smtp.supports_extension("starttls"):
            try:
                await smtp.starttls(
                    server_hostname=None if _is_ip(host) else host,
                    tls_context=policy.context if policy else _TLS,
                )
            except (ssl.SSLError, aiosmtplib.SMTPResponseException) as exc:
                why = f" ({policy.why} requires a valid certificate)" if policy else ""
                raise SessionError(
                    f"{where}: STARTTLS failed: {exc}{why}", "4.7.5", tls_failed=True
                ) from exc
            if policy is not None and policy.check is not None:
                ssl_object = smtp.get_transport_info("ssl_object")
                der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
                if not der or not policy.check(der):
                    raise SessionError(
                        f"{where}: DANE: the certificate matches no TLSA record",
                        "4.7.5",
                        tls_failed=True,
                    )
            await smtp.ehlo()  # RFC 3207 §4.2: forget what was said before TLS
        elif policy is not None:
            raise SessionError(
                f"{where}: no STARTTLS offered, but {policy.why} requires TLS",
                "4.7.5",
                tls_failed=True,
            )
        if opts.credentials is not None:
            await _login(smtp, where, ip, opts.credentials)
    except SessionError:
        smtp.close()
        raise
    except aiosmtplib.SMTPResponseException as exc:
        smtp.close()
        reply = " ".join(exc.message.split())
        raise SessionError(f"{where}: {exc.code} {reply}") from exc
    except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
        smtp.close()
        raise SessionError(f"{where}: {_why(exc)}") from exc
    return Session(smtp, host, ip)


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()


async def _login(smtp: aiosmtplib.SMTP, where: str, ip: str, creds: Credentials) -> None:
    encrypted = smtp.get_transport_info("sslcontext") is not None
    if not encrypted and not _is_loopback(ip):
        # Opportunistic TLS may fall back to plaintext; a password must not.
        raise SessionError(f"{where}: no TLS, not sending the smart host password in clear")
    methods = smtp.server_auth_methods
    mech = creds.mechanism.lower()
    if mech not in methods:
        offered = " ".join(methods).upper() or "none"
        raise SessionError(f"{where}: AUTH {creds.mechanism} not offered (offered: {offered})")
    try:
        if mech == "plain":
            await smtp.auth_plain(creds.username, creds.password)
        else:
            await smtp.auth_login(creds.username, creds.password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        # A refused login is a configuration problem: keep the mail and retry,
        # as Postfix does, rather than bounce it to an innocent sender.
        reply = " ".join(exc.message.split())
        raise SessionError(f"{where}: AUTH failed: {exc.code} {reply}", "4.7.0") from exc
