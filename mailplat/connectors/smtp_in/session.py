"""One SMTP session: the RFC 5321 state machine, one `smtp_VERB` method per command.

Input: lines and message data from an SmtpConnection. Output: replies (each
a named constant of core.replies) and, through the InboundHandler, messages
made durable before their 250. Policy (who may send what to whom) lives in
handler.py and policy.py; parsing of the wire in wire.py; sockets in
connection.py.

Rules kept here:
- the null reverse-path `<>` is a sender like any other (RFC 5321 §4.5.5);
- a session must greet before MAIL; MAIL, RCPT, DATA come in order; RSET,
  EHLO, HELO and STARTTLS end a transaction;
- STARTTLS (RFC 3207 §4.2) forgets everything the client said before it and
  is refused inside TLS (503 5.5.1); AUTH (RFC 4954) is refused during a
  transaction, when already authenticated, and before TLS where TLS is
  required (538 5.7.11);
- every limit answers with its code before the connection closes: too many
  errors, messages, junk commands, failed logins (421), idle and data
  timeouts (421 4.4.2), a graceful stop (421 4.3.2);
- failed logins all take the same time and say the same words, known user
  or not (auth/logins.py counts them across connections);
- nothing a client sends raises out of here: a bug becomes 451 and one log
  line with its traceback, which is ours to fix.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailplat.auth.logins import Outcome
from mailplat.config.directory import Directory
from mailplat.connectors.smtp_in.connection import (
    Closed,
    Flood,
    LineTooLong,
    SmtpConnection,
    StreamEvent,
    Timeout,
    TlsFailed,
)
from mailplat.connectors.smtp_in.wire import (
    MAX_AUTH_LINE,
    MAX_COMMAND_LINE,
    MAX_DATA_LINE,
    MAX_PATH_COMMAND_LINE,
    WireError,
    parse_path_command,
    split_command,
)
from mailplat.core import replies as r
from mailplat.core.address import Address, parse_address
from mailplat.core.errors import AddressError
from mailplat.core.netmatch import ip_matches
from mailplat.message.headers import has_bare_line_ending
from mailplat.trust.inbound import SpfVerdict

if TYPE_CHECKING:
    from mailplat.connectors.smtp_in.handler import InboundHandler

log = logging.getLogger("mailplat.smtp")
W3C_LOG = logging.getLogger("mailplat.w3c")

# RFC 5321 §4.5.3.2.7: wait at least 5 minutes for a command.
# Commands that move no mail; past smtp.max_junk_commands between two accepted
# messages the session ends (a HELO loop must not hold a connection forever).
JUNK = frozenset({"NOOP", "RSET", "VRFY", "EXPN", "HELP", "ETRN", "HELO", "EHLO"})
HTTP_VERBS = frozenset({"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS"})
# Failed logins a connection may make before it is closed (chasquid's rule).
AUTH_FAILURES_PER_CONNECTION = 3
HARD_SIZE_CAP = 256 * 1024 * 1024  # memory bound when no size limit is enforced


@dataclass(frozen=True, slots=True)
class ListenerOptions:
    """What one listener decides for all its sessions."""

    kind: str  # smtp | submission | smtps
    starttls: ssl.SSLContext | None
    implicit_tls: bool
    auth_requires_tls: bool

    @property
    def auth_required(self) -> bool:
        """Submission and SMTPS take mail only from authenticated users."""
        return self.kind in ("submission", "smtps")


@dataclass(slots=True)
class Transaction:
    """One MAIL ... DATA transaction."""

    sender: Address | None  # None is <>
    smtputf8: bool = False
    declared_size: int | None = None
    rcpts: list[str] = field(default_factory=list)
    # The mailbox each recipient reaches directly (quota check at DATA), or None.
    mailboxes: list[str | None] = field(default_factory=list)
    # SPF of this transaction's sender, checked at its first local RCPT (handler.py).
    spf: SpfVerdict | None = None


class SmtpSession:
    """The state of one client connection (reset in part by STARTTLS)."""

    def __init__(
        self,
        conn: SmtpConnection,
        handler: InboundHandler,
        options: ListenerOptions,
        directory: Directory,
        *,
        on_ban: Callable[[str, int], None],
    ) -> None:
        self.conn = conn
        self.handler = handler
        self.options = options
        self.peer_ip = conn.peer_ip
        self.greeting_directory = directory
        self._on_ban = on_ban
        self.helo: str | None = None
        self.esmtp = False
        self.login_key: str | None = None
        self.snapshot: Directory | None = None  # the config this transaction is decided by
        self.tx: Transaction | None = None
        self.client_verdict: str | None = None  # PTR/DNSBL: None unchecked, "" passed
        self.failures = 0
        self.auth_failures = 0
        self.messages = 0
        self.junk = 0
        self.closing = False
        self._w3c = W3C_LOG.isEnabledFor(logging.INFO)
        self._command = ("-", "-")

    # -- facts for the handler and policy ------------------------------------------------

    @property
    def tls(self) -> bool:
        return self.conn.tls

    @property
    def directory(self) -> Directory:
        """The transaction's snapshot, else the current config."""
        return self.snapshot or self.handler.context.directory

    def may_auth_now(self) -> bool:
        return self.tls or not self.options.auth_requires_tls

    def protocol_name(self) -> str:
        """RFC 3848 protocol type for the Received header."""
        name = "ESMTP" if self.esmtp else "SMTP"
        if self.tls:
            name += "S"
        if self.login_key:
            name += "A"
        return name

    # -- replies ---------------------------------------------------------------------------

    def reply(self, text: str) -> None:
        self.conn.reply(text)
        if self._w3c and text[3:4] != "-":
            self._w3c_line(text)

    def _w3c_line(self, text: str) -> None:
        host, port = self.conn.local
        command, arg = self._command
        shown = arg[:200]
        if shown.isprintable():
            query = shown.replace(" ", "+")  # the usual case, in C
        else:
            query = "".join(c if c.isprintable() and c != " " else "+" for c in shown)
        W3C_LOG.info("%s %s %s %s %s %s", self.peer_ip, host, port, command, query, text[:3])

    async def close_with(self, text: str) -> None:
        """Say `text` (a 421), then close: every refusal is a reply first."""
        self.reply(text)
        self.closing = True
        await self.conn.close()

    async def fail(self, text: str) -> None:
        """Answer a failed command; past security.max_failures also 421, close, maybe ban."""
        self.failures += 1
        security = self.directory.site.security
        if self.failures < security.max_failures:
            self.reply(text)
            return
        self.reply(text)
        log.warning("smtp too-many-failures peer=%s count=%d", self.peer_ip, self.failures)
        if security.auto_ban.enabled and not ip_matches(self.peer_ip, security.ip_whitelist):
            self._on_ban(self.peer_ip, security.auto_ban.minutes)
            log.warning("smtp auto-ban peer=%s minutes=%d", self.peer_ip, security.auto_ban.minutes)
        await self.close_with(r.S421_TOO_MANY_ERRORS)

    # -- the loop --------------------------------------------------------------------------

    def banner(self) -> str:
        site = self.greeting_directory.site
        if site.smtp.banner:
            text = site.smtp.banner.replace("%LOCALDOMAIN%", site.server.local_domain)
            text = text.replace("%TIME%", time.strftime("%a, %d %b %Y %H:%M:%S %z"))
            return "220 " + "".join(ch for ch in text if ch >= " ")
        return f"220 {site.server.host_name} ESMTP mailplat"

    async def run(self) -> None:
        """Greet, then answer commands until QUIT, a limit, a timeout or the peer goes."""
        self._command = ("-", "-")
        self.reply(self.banner())
        smtp = self.greeting_directory.site.smtp
        while not self.closing:
            limit = MAX_PATH_COMMAND_LINE if self.esmtp else MAX_COMMAND_LINE
            try:
                line = await self.conn.read_line(limit, smtp.idle_timeout_seconds)
                await self.dispatch(line)
            except LineTooLong:
                self._command = ("-", "-")
                log.info("smtp line-too-long peer=%s", self.peer_ip)
                await self.fail(r.S500_LINE_TOO_LONG)
                continue
            except Flood:
                log.info("smtp flood peer=%s: no line end", self.peer_ip)
                await self.close_with(r.S421_LINE_FLOOD)
                return
            except Timeout:
                log.info("smtp timeout peer=%s", self.peer_ip)
                await self.close_with(r.S421_TIMEOUT)
                return
            except Closed:
                if self.conn.stopping:
                    await self.close_with(r.S421_SHUTTING_DOWN)
                return
            except TlsFailed:
                return

    async def dispatch(self, line: bytes) -> None:
        try:
            verb, arg = split_command(line)
        except WireError as exc:
            self._command = ("-", "-")
            log.info("smtp bad-command peer=%s why=%s", self.peer_ip, exc.detail)
            await self.fail(exc.reply)
            return
        method = _VERBS.get(verb)
        self._command = (verb, "-" if verb == "AUTH" or not arg else arg.decode("utf-8", "replace"))
        if method is None:
            if verb in HTTP_VERBS:
                log.info("smtp http-request peer=%s verb=%s", self.peer_ip, verb)
                await self.close_with(r.S421_NOT_HTTP)
                return
            log.info("smtp unknown-command peer=%s verb=%.16s", self.peer_ip, verb)
            await self.fail(r.S500_UNRECOGNIZED)
            return
        if verb in JUNK:
            self.junk += 1
            if self.junk > self.directory.site.smtp.max_junk_commands:
                log.warning("smtp too-many-commands peer=%s verb=%s", self.peer_ip, verb)
                await self.close_with(r.S421_TOO_MANY_COMMANDS)
                return
        try:
            await method(self, arg)
        except StreamEvent:
            raise
        except Exception as exc:  # a bug of ours: the client gets 451, we get the trace
            log.exception("smtp internal-error peer=%s verb=%s: %s", self.peer_ip, verb, exc)
            self.reply(r.S451_LOCAL_ERROR)

    # -- greeting and session state --------------------------------------------------------

    def _reset(self) -> None:
        self.tx = None
        self.snapshot = None

    async def smtp_HELO(self, arg: bytes) -> None:
        await self._greet(arg, esmtp=False)

    async def smtp_EHLO(self, arg: bytes) -> None:
        await self._greet(arg, esmtp=True)

    async def _greet(self, arg: bytes, *, esmtp: bool) -> None:
        name = arg.decode("utf-8", "replace").strip()
        if not name or " " in name:
            await self.fail(r.S501_SYNTAX_EHLO if esmtp else r.S501_SYNTAX_HELO)
            return
        self._reset()
        self.helo = name
        self.esmtp = esmtp
        host = self.directory.site.server.host_name
        if not esmtp:
            self.reply(f"250 {host}")
            return
        site = self.directory.site
        lines = [host, "PIPELINING"]
        if site.smtp.enforce_max_message_size and site.smtp.max_message_size_kb:
            lines.append(f"SIZE {site.smtp.max_message_size_kb * 1024}")
        else:
            lines.append("SIZE")
        lines += ["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        if self.options.starttls is not None and not self.tls:
            lines.append("STARTTLS")
        if self.may_auth_now():
            lines.append("AUTH PLAIN LOGIN")
        if "ETRN" in site.smtp.allowed_commands:
            lines.append("ETRN")
        for line in lines[:-1]:
            self.reply(f"250-{line}")
        self.reply(f"250 {lines[-1]}")

    async def smtp_NOOP(self, arg: bytes) -> None:
        self.reply(r.S250_OK)

    async def smtp_RSET(self, arg: bytes) -> None:
        if arg:
            await self.fail(r.S501_SYNTAX)
            return
        self._reset()
        self.reply(r.S250_OK)

    async def smtp_QUIT(self, arg: bytes) -> None:
        await self.close_with(r.S221_BYE)

    async def smtp_HELP(self, arg: bytes) -> None:
        site = self.directory.site
        if "HELP" not in site.smtp.allowed_commands:
            self.reply(r.S502_NOT_IMPLEMENTED)
            return
        self.reply("214-2.0.0 Commands this session may use:")
        self.reply("214 2.0.0 " + " ".join(self.commands_available()))

    def commands_available(self) -> list[str]:
        """What HELP lists: the commands this session may use now."""
        allowed = self.directory.site.smtp.allowed_commands
        names = ["HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"]
        if self.options.starttls is not None and not self.tls:
            names.append("STARTTLS")
        if self.may_auth_now() and self.login_key is None:
            names.append("AUTH")
        names += [c for c in ("HELP", "VRFY", "EXPN", "ETRN") if c in allowed]
        return names

    # -- TLS and AUTH ---------------------------------------------------------------------------

    async def smtp_STARTTLS(self, arg: bytes) -> None:
        if arg:
            await self.fail(r.S501_SYNTAX)
            return
        if self.tls:
            await self.fail(r.S503_TLS_ACTIVE)
            return
        if self.options.starttls is None:
            self.reply(r.S454_TLS_UNAVAILABLE)
            return
        self.reply(r.S220_READY_TLS)
        await self.upgrade(self.options.starttls)
        # RFC 3207 §4.2: forget everything learnt before the handshake.
        self._reset()
        self.helo = None
        self.esmtp = False
        self.login_key = None
        self.client_verdict = None

    async def upgrade(self, context: ssl.SSLContext) -> None:
        """Start TLS; a failed handshake is one log line and the end of the session."""
        try:
            await self.conn.start_tls(context)
        except TlsFailed as exc:
            log.info("smtp tls-failed peer=%s reason=%s", self.peer_ip, exc.reason)
            self.closing = True
            raise

    async def smtp_AUTH(self, arg: bytes) -> None:
        if self.helo is None or not self.esmtp:
            await self.fail(r.S503_HELO_FIRST)
            return
        if self.login_key is not None:
            await self.fail(r.S503_ALREADY_AUTH)
            return
        if self.tx is not None:
            await self.fail(r.S503_AUTH_IN_TRANSACTION)
            return
        if not self.may_auth_now():
            await self.fail(r.S538_ENCRYPTION_REQUIRED)
            return
        parts = arg.split()
        if not parts or len(parts) > 2:
            await self.fail(r.S501_SYNTAX)
            return
        mechanism = parts[0].upper()
        initial = parts[1] if len(parts) == 2 else None
        if mechanism == b"PLAIN":
            credentials = await self._auth_plain(initial)
        elif mechanism == b"LOGIN":
            credentials = await self._auth_login(initial)
        else:
            await self.fail(r.S504_BAD_MECHANISM)
            return
        if credentials is None:
            return
        await self._login(*credentials)

    async def _challenge(self, prompt: str) -> bytes | None:
        """Send a 334 challenge; the client's decoded answer, or None (reply already sent)."""
        self.reply(f"334 {prompt}")
        line = await self.conn.read_line(
            MAX_AUTH_LINE, self.directory.site.smtp.idle_timeout_seconds
        )
        return self._decode(line)

    def _decode(self, text: bytes) -> bytes | None:
        if text == b"*":
            self.reply(r.S501_AUTH_CANCELLED)
            return None
        if text == b"=":  # RFC 4954 §4: an empty initial response
            return b""
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.reply(r.S501_BAD_BASE64)
            return None

    async def _auth_plain(self, initial: bytes | None) -> tuple[str, str] | None:
        raw = self._decode(initial) if initial is not None else await self._challenge("")
        if raw is None:
            return None
        # RFC 4616 §2: authzid NUL authcid NUL passwd.
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            return ("", "")  # a malformed PLAIN is a failed login, counted as one
        authzid, authcid, passwd = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid != authcid:
            return ("", "")  # no acting as someone else
        return authcid, passwd

    async def _auth_login(self, initial: bytes | None) -> tuple[str, str] | None:
        user = (
            self._decode(initial) if initial is not None else await self._challenge("VXNlcm5hbWU6")
        )
        if user is None:
            return None
        password = await self._challenge("UGFzc3dvcmQ6")
        if password is None:
            return None
        return user.decode("utf-8", "replace"), password.decode("utf-8", "replace")

    async def _login(self, login: str, password: str) -> None:
        logins = self.handler.context.logins
        started = asyncio.get_running_loop().time()
        result = await logins.check(login, password, self.peer_ip, "smtp")
        if result.outcome is Outcome.THROTTLED:
            self.auth_failures += 1
            await self.fail(r.S454_LOGIN_THROTTLED)
            return
        if result.ok and result.entry is not None and not result.entry.model.disabled:
            self.login_key = result.entry.key
            log.info("smtp auth-ok peer=%s login=%s", self.peer_ip, self.login_key)
            self.reply(r.S235_AUTH_OK)
            return
        # Every failure takes the same time in total and says the same words.
        left = started + logins.failure_delay() - asyncio.get_running_loop().time()
        if left > 0:
            await asyncio.sleep(left)
        self.auth_failures += 1
        log.info("smtp auth-failed peer=%s count=%d", self.peer_ip, self.auth_failures)
        if self.auth_failures >= AUTH_FAILURES_PER_CONNECTION:
            self.reply(r.S535_AUTH_FAILED)
            await self.close_with(r.S421_TOO_MANY_AUTH)
            return
        await self.fail(r.S535_AUTH_FAILED)

    # -- the transaction ---------------------------------------------------------------------

    async def _may_transact(self) -> bool:
        """HELO first; on submission, AUTH first (and STARTTLS before that)."""
        if self.helo is None:
            await self.fail(r.S503_HELO_FIRST)
            return False
        if self.options.auth_required and self.login_key is None:
            await self.fail(r.S530_AUTH_REQUIRED if self.may_auth_now() else r.S530_STARTTLS_FIRST)
            return False
        return True

    async def smtp_MAIL(self, arg: bytes) -> None:
        if not await self._may_transact():
            return
        if self.tx is not None:
            await self.fail(r.S503_NESTED_MAIL)
            return
        smtp = self.handler.context.directory.site.smtp
        if self.messages >= smtp.max_messages_per_connection:
            log.warning("smtp too-many-messages peer=%s count=%d", self.peer_ip, self.messages)
            await self.close_with(r.S421_TOO_MANY_MESSAGES)
            return
        try:
            cmd = parse_path_command(arg, b"FROM:", smtputf8=None, esmtp=self.esmtp)
            declared, smtputf8 = self._mail_params(cmd.params)
        except WireError as exc:
            log.info("smtp mail-from-rejected peer=%s why=%s", self.peer_ip, exc.detail)
            await self.fail(exc.reply)
            return
        sender: Address | None = None
        if cmd.path:
            try:
                sender = parse_address(cmd.path)
            except AddressError as exc:
                log.info(
                    "smtp mail-from-rejected peer=%s from=%r why=%s", self.peer_ip, cmd.path, exc
                )
                await self.fail(r.S501_BAD_ADDRESS)
                return
        self.messages += 1
        self.snapshot = self.handler.context.directory
        refusal = await self.handler.mail(self, sender, declared)
        if refusal is not None:
            self.snapshot = None
            if refusal.startswith("5"):
                await self.fail(refusal)
            else:
                self.reply(refusal)  # a temporary refusal is no sign of abuse
            return
        self.tx = Transaction(sender=sender, smtputf8=smtputf8, declared_size=declared)
        self.reply(r.S250_SENDER_OK)

    def _mail_params(self, params: dict[str, str | None]) -> tuple[int | None, bool]:
        """RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 4954 AUTH; else 555."""
        declared: int | None = None
        smtputf8 = False
        for name, value in params.items():
            if name == "SIZE":
                if value is None or not value.isdigit() or len(value) > 20:
                    raise WireError(r.S501_SIZE)
                declared = int(value)
            elif name == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    raise WireError(r.S501_BODY)
            elif name == "SMTPUTF8":
                if value is not None:
                    raise WireError(r.S501_NO_VALUE.format(name=name))
                smtputf8 = True
            elif name == "AUTH":
                pass  # RFC 4954 §5: the original submitter; we trust our own AUTH only
            else:
                raise WireError(r.S555_UNKNOWN_PARAMETER.format(name=name))
        return declared, smtputf8

    async def _open_transaction(self) -> Transaction | None:
        """The transaction RCPT and DATA belong to, or None after saying why there is none."""
        if self.helo is None:
            await self.fail(r.S503_HELO_FIRST)
            return None
        if self.tx is None:
            await self.fail(r.S503_NEED_MAIL)
        return self.tx

    async def smtp_RCPT(self, arg: bytes) -> None:
        tx = await self._open_transaction()
        if tx is None:
            return
        try:
            cmd = parse_path_command(arg, b"TO:", smtputf8=tx.smtputf8, esmtp=self.esmtp)
        except WireError as exc:
            log.info("smtp rcpt-rejected peer=%s why=%s", self.peer_ip, exc.detail)
            await self.fail(exc.reply)
            return
        if cmd.params:
            # No RCPT parameter is offered (no DSN extension), so none is understood.
            await self.fail(r.S555_UNKNOWN_PARAMETER.format(name=next(iter(cmd.params))))
            return
        if len(tx.rcpts) >= self.directory.site.smtp.max_recipients:
            self.reply(r.S452_TOO_MANY_RCPTS)
            return
        path = cmd.path
        if path.lower() == "postmaster":
            # RFC 5321 §4.5.1: <Postmaster> with no domain must be accepted.
            path = f"postmaster@{self.handler.postmaster_domain(self.directory)}"
        try:
            rcpt = parse_address(path)
        except AddressError as exc:
            log.info("smtp rcpt-rejected peer=%s to=%r why=%s", self.peer_ip, cmd.path, exc)
            await self.fail(r.S553_BAD_MAILBOX)
            return
        verdict = await self.handler.rcpt(self, tx, rcpt)
        if verdict.reply is not None:
            if verdict.failure:
                await self.fail(verdict.reply)
            else:
                self.reply(verdict.reply)
            return
        tx.rcpts.append(str(rcpt))
        tx.mailboxes.append(verdict.mailbox)
        self.reply(r.S250_RCPT_OK)

    async def smtp_DATA(self, arg: bytes) -> None:
        tx = await self._open_transaction()
        if tx is None:
            return
        if not tx.rcpts:
            await self.fail(r.S503_NEED_RCPT)
            return
        if arg:
            await self.fail(r.S501_SYNTAX)
            return
        smtp = self.directory.site.smtp
        limit = smtp.max_message_size_kb * 1024 if smtp.enforce_max_message_size else 0
        self.reply(r.S354_START_DATA)
        try:
            data = await self.conn.read_data(
                limit or HARD_SIZE_CAP, smtp.idle_timeout_seconds, smtp.data_timeout_seconds
            )
        except Timeout:
            log.info("smtp data-timeout peer=%s", self.peer_ip)
            await self.close_with(r.S421_DATA_TIMEOUT)
            return
        self._command = ("DATA", "-")
        self._reset()
        if data.message is None:
            log.info("smtp too-big peer=%s size=%d limit=%d", self.peer_ip, data.size, limit)
            self.reply(r.S552_TOO_BIG)
            return
        reply = self._check_data(data.message, data.longest_line)
        if reply is None:
            reply = await self.handler.data(self, tx, data.message)
        if reply.startswith("250"):
            self.junk = 0  # as Postfix: junk commands are counted between messages
        self.reply(reply)

    def _check_data(self, message: bytes, longest: int) -> str | None:
        """Refuse what no downstream server may ever see (RELIABILITY.md guarantee 4)."""
        if longest > MAX_DATA_LINE:
            log.info("smtp line-too-long peer=%s in=data length=%d", self.peer_ip, longest)
            return r.S500_LINE_TOO_LONG
        # RFC 5321 §2.3.8 / SMTP smuggling: a bare CR or LF could hide a second
        # message from a downstream server; a NUL ends data for servers that
        # strip it. Either way the message is refused whole.
        if has_bare_line_ending(message):
            log.warning("smtp bare-line-ending peer=%s", self.peer_ip)
            return r.S550_BARE_LINE_ENDING
        if b"\x00" in message:
            log.warning("smtp nul-in-data peer=%s", self.peer_ip)
            return r.S550_NUL
        return None

    # -- optional commands ----------------------------------------------------------------------

    async def smtp_VRFY(self, arg: bytes) -> None:
        if not arg:
            await self.fail(r.S501_SYNTAX)
            return
        self.reply(await self.handler.vrfy(self, arg.decode("utf-8", "replace")))

    async def smtp_EXPN(self, arg: bytes) -> None:
        if not arg:
            await self.fail(r.S501_SYNTAX)
            return
        for line in await self.handler.expn(self, arg.decode("utf-8", "replace")):
            self.reply(line)

    async def smtp_ETRN(self, arg: bytes) -> None:
        if "ETRN" not in self.directory.site.smtp.allowed_commands:
            self.reply(r.S502_NOT_IMPLEMENTED)
            return
        if self.helo is None:
            await self.fail(r.S503_HELO_FIRST)
            return
        if self.tx is not None:
            await self.fail(r.S503_IN_TRANSACTION)
            return
        if not arg:
            await self.fail(r.S501_SYNTAX)
            return
        self.reply(await self.handler.etrn(self, arg.decode("utf-8", "replace")))


Verb = Callable[[SmtpSession, bytes], Awaitable[None]]
# One table for the class, not a dir() walk per connection.
_VERBS: dict[str, Verb] = {
    name[5:]: getattr(SmtpSession, name) for name in vars(SmtpSession) if name.startswith("smtp_")
}
