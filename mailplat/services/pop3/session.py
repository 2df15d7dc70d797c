"""One POP3 session: the RFC 1939 state machine, one `pop3_VERB` method per command.

Input: framing events from protocol.LineReader. Output: a `Response` per
event (bytes to send plus what the connection must do next: go on, close,
or start TLS). The listener owns the socket; this module never touches it.

`answer(event)` answers at once when it can (CAPA, UIDL, DELE, a RETR of a
small message: no task, no await) and otherwise returns an awaitable of the
Response (logins, the update at QUIT, big messages, sizes still to measure);
the listener runs that in a task and answers nothing else until it is done.

Guarantees (RELIABILITY.md guarantee 9):
- messages are a snapshot taken at login; mail arriving later is not shown;
- nothing is deleted before QUIT in the TRANSACTION state (RFC 1939 §6); a
  dropped connection, a timeout or a shutdown deletes nothing;
- one session per mailbox: a second login gets [IN-USE] (RFC 2449 §8.1.1);
- sizes in STAT and LIST are the exact octets RETR sends before dot-stuffing;
- failed logins are delayed and logged; passwords are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailplat.core import replies as r
from mailplat.core.errors import MailplatError, ProtocolError
from mailplat.services.pop3.protocol import (
    FLOOD,
    MAX_AUTH_LINE,
    MAX_COMMAND_LINE,
    TOO_LONG,
    CommandError,
    Event,
    Signal,
    multiline,
    multiline_lines,
    parse_command,
    parse_number,
    reply,
    top_of,
)
from mailplat.store.maildir import Maildir, MessageInfo, to_wire

log = logging.getLogger("mailplat.pop3")

# RFC 1939 §7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
MAX_UIDL = 70
# Messages up to this many stored bytes are read on the event loop: open, read
# and close of a small file cost less than the hand-off to a worker thread and
# back. Bigger ones go to a thread so one download never stalls other sessions.
INLINE_READ_MAX = 128 * 1024


class LoginDisabled(MailplatError):
    """Raised by a backend for a correct login whose logon is disabled."""


class LoginThrottled(MailplatError):
    """Raised by a backend when the client is in its failed-login cooldown."""


@dataclass(frozen=True, slots=True)
class MailboxHandle:
    """What a good login opens: a unique key (for locking) and the mailbox's Maildir."""

    key: str
    maildir: Maildir


class Pop3Backend(Protocol):
    """The injected authority on logins (mailplat's runtime provides the real one)."""

    async def authenticate(self, login: str, password: str, client_ip: str) -> MailboxHandle | None:
        """A handle for a good login, None for a bad one; raise LoginDisabled when disabled."""
        ...


OnLogin = Callable[[MailboxHandle, str], Awaitable[None] | None]


class MailboxLocks:
    """Mailbox keys with an open session; one registry shared by all listeners of a server."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def acquire(self, key: str) -> bool:
        """Take the lock for `key`; False when another session holds it."""
        if key in self._held:
            return False
        self._held.add(key)
        return True

    def release(self, key: str) -> None:
        self._held.discard(key)

    def held(self, key: str) -> bool:
        return key in self._held


@dataclass(frozen=True, slots=True)
class Pop3Options:
    """Per-server policy."""

    host_name: str = "localhost"
    require_tls_for_auth: bool = False
    failed_login_delay: float = 1.0
    # RFC 1939 §3: an autologout timer of at least 10 minutes.
    idle_timeout: float = 600.0
    max_bad_commands: int = 10
    max_auth_failures: int = 3


@dataclass(slots=True)
class Pop3Context:
    """What every session of one server shares."""

    backend: Pop3Backend
    options: Pop3Options = field(default_factory=Pop3Options)
    locks: MailboxLocks = field(default_factory=MailboxLocks)
    on_login: OnLogin | None = None


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"


class Action(enum.Enum):
    """What the connection does after sending a response."""

    CONTINUE = "continue"
    CLOSE = "close"
    STARTTLS = "starttls"


@dataclass(frozen=True, slots=True)
class Response:
    data: bytes
    action: Action = Action.CONTINUE


# What a command method gives: the Response now, or a coroutine that makes it.
Answer = Response | Coroutine[Any, Any, Response]


# Which verbs each state accepts (RFC 1939 §4-§7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4).
_ALLOWED: dict[State, frozenset[str]] = {
    State.AUTHORIZATION: frozenset({"USER", "PASS", "AUTH", "STLS", "CAPA", "QUIT"}),
    State.TRANSACTION: frozenset(
        {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "QUIT"}
    ),
    State.UPDATE: frozenset(),
}
_KNOWN = frozenset().union(*_ALLOWED.values())


def pop_uid(uid: str) -> str:
    """The UIDL string for a Maildir uid: the uid itself when RFC 1939 §7 allows it.

    Otherwise (a long host name, odd characters from a foreign writer) a digest
    of it, which is just as stable across sessions and restarts.
    """
    if 0 < len(uid) <= MAX_UIDL and all(0x21 <= ord(c) <= 0x7E for c in uid):
        return uid
    return hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def _ok(text: str = "") -> Response:
    return Response(reply(f"{r.POP_OK} {text}" if text else r.POP_OK))


def _err(text: str, action: Action = Action.CONTINUE) -> Response:
    return Response(reply(text), action)


class _Syntax(ProtocolError):
    """A malformed argument: counts as a bad command."""

    def __init__(self) -> None:
        super().__init__(r.POP_SYNTAX)


class Pop3Session:
    """The state of one client connection (or of one TLS epoch of it)."""

    def __init__(
        self, ctx: Pop3Context, *, client_ip: str, tls: bool, starttls_available: bool
    ) -> None:
        self.ctx = ctx
        self.client_ip = client_ip
        self.tls = tls
        self.starttls_available = starttls_available
        self.state = State.AUTHORIZATION
        self.handle: MailboxHandle | None = None
        self._user: str | None = None
        self._auth_pending = False
        self._bad = 0
        self._auth_failures = 0
        self._messages: list[MessageInfo] = []
        self._sized = False  # every size in _messages known (see _sizes)
        self._deleted: set[int] = set()
        self._retrieved: set[int] = set()

    # -- lifecycle -------------------------------------------------------------------

    def greeting(self) -> bytes:
        """RFC 1939 §4: the greeting. No APOP timestamp: APOP is not offered."""
        return reply(f"{r.POP_OK} {self.ctx.options.host_name} POP3 server ready")

    def after_tls(self) -> Pop3Session:
        """RFC 2595 §4: after STLS the client starts over; nothing from before survives."""
        return Pop3Session(self.ctx, client_ip=self.client_ip, tls=True, starttls_available=False)

    @property
    def line_limit(self) -> int:
        """The longest line the next event may carry."""
        return MAX_AUTH_LINE if self._auth_pending else MAX_COMMAND_LINE

    def close(self) -> None:
        """Release the mailbox without touching it (connection gone or QUIT done)."""
        if self.handle is not None:
            self.ctx.locks.release(self.handle.key)
            self.handle = None

    @property
    def login_allowed(self) -> bool:
        return self.tls or not self.ctx.options.require_tls_for_auth

    # -- dispatch --------------------------------------------------------------------

    def answer(self, event: Event) -> Response | Awaitable[Response]:
        """Answer one framing event: the Response, or an awaitable of it when I/O must wait."""
        if isinstance(event, Signal):
            self._auth_pending = False
            if event is FLOOD:
                log.info("pop3 flood peer=%s: no line end, closing", self.client_ip)
                return _err(r.POP_LINE_TOO_LONG, Action.CLOSE)
            assert event is TOO_LONG
            log.info("pop3 line-too-long peer=%s", self.client_ip)
            return self._bad_command(r.POP_LINE_TOO_LONG)
        if self._auth_pending:
            self._auth_pending = False
            return self._settle("AUTH", self._auth_continue(event.data))
        try:
            command = parse_command(event.data)
        except CommandError as exc:
            log.info("pop3 bad-line peer=%s why=%s", self.client_ip, exc)
            return self._bad_command(r.POP_BAD_COMMAND)
        if command.verb not in _KNOWN:
            log.info("pop3 unknown-command peer=%s verb=%.40s", self.client_ip, command.verb)
            return self._bad_command(r.POP_BAD_COMMAND)
        if command.verb not in _ALLOWED[self.state]:
            return self._bad_command(r.POP_BAD_SEQUENCE)
        method: Callable[[str], Answer] = getattr(self, "pop3_" + command.verb)
        return self._settle(command.verb, method, command.arg)

    def _settle(
        self,
        verb: str,
        method: Callable[[str], Answer] | Answer,
        arg: str = "",
    ) -> Response | Awaitable[Response]:
        """Call a command method (or take its answer) and turn its refusals into replies."""
        try:
            answer = method(arg) if callable(method) else method
        except (_Syntax, ProtocolError) as exc:
            return self._refused(verb, exc)
        if isinstance(answer, Response):
            return answer
        return self._finish(verb, answer)

    async def _finish(self, verb: str, pending: Awaitable[Response]) -> Response:
        try:
            return await pending
        except (_Syntax, ProtocolError) as exc:
            return self._refused(verb, exc)

    def _refused(self, verb: str, exc: ProtocolError) -> Response:
        if isinstance(exc, _Syntax):
            return self._bad_command(r.POP_SYNTAX)
        # One place turns an error into a reply and a log line (STYLE.md).
        level = logging.INFO if exc.user_side else logging.ERROR
        log.log(level, "pop3 %s peer=%s: %s", verb, self.client_ip, exc.detail)
        return _err(exc.reply)

    def _bad_command(self, text: str) -> Response:
        self._bad += 1
        if self._bad >= self.ctx.options.max_bad_commands:
            log.info("pop3 too-many-errors peer=%s count=%d", self.client_ip, self._bad)
            return _err(r.POP_TOO_MANY_ERRORS, Action.CLOSE)
        return _err(text)

    # -- AUTHORIZATION ------------------------------------------------------------------

    def pop3_CAPA(self, arg: str) -> Answer:
        """RFC 2449 §5: the capability list; logins are hidden until they are allowed."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.login_allowed:
            caps += ["USER", "SASL PLAIN"]
        if self.starttls_available and not self.tls and self.state is State.AUTHORIZATION:
            caps.append("STLS")
        caps.append("IMPLEMENTATION mailplat")
        return Response(multiline_lines(f"{r.POP_OK} Capability list follows", caps))

    def pop3_STLS(self, arg: str) -> Answer:
        """RFC 2595 §4: begin TLS; the listener drops every byte received before it."""
        if arg:
            raise _Syntax
        if self.tls:
            return self._bad_command(r.POP_TLS_ACTIVE)
        if not self.starttls_available:
            return _err(r.POP_TLS_UNAVAILABLE)
        return Response(reply(r.POP_STLS_GO), Action.STARTTLS)

    def pop3_USER(self, arg: str) -> Answer:
        """RFC 1939 §7 USER: remember the name; the answer never says whether it exists."""
        if not self.login_allowed:
            return _err(r.POP_TLS_REQUIRED)
        if not arg or " " in arg:
            raise _Syntax
        self._user = arg
        return _ok("Send your password")

    def pop3_PASS(self, arg: str) -> Answer:
        """RFC 1939 §7 PASS: the whole rest of the line is the password (it may hold spaces)."""
        if not self.login_allowed:
            return _err(r.POP_TLS_REQUIRED)
        if self._user is None:
            return self._bad_command(r.POP_BAD_SEQUENCE)
        user, self._user = self._user, None
        return self._login(user, arg)

    def pop3_AUTH(self, arg: str) -> Answer:
        """RFC 5034 §4 AUTH PLAIN, with an initial response or a `+ ` continuation."""
        if not self.login_allowed:
            return _err(r.POP_TLS_REQUIRED)
        parts = arg.split(" ")
        if not arg:
            # RFC 1734 style listing, still probed by some clients.
            return Response(multiline_lines(f"{r.POP_OK} Mechanisms follow", ["PLAIN"]))
        if parts[0].upper() != "PLAIN":
            return _err(r.POP_BAD_MECHANISM)
        if len(parts) > 2:
            raise _Syntax
        if len(parts) == 2:
            return self._auth_plain(parts[1])
        self._auth_pending = True
        return Response(reply(r.POP_AUTH_CONTINUE))

    async def _auth_continue(self, line: bytes) -> Response:
        if line == b"*":
            # RFC 5034 §4: `*` cancels the exchange.
            return _err(r.POP_AUTH_CANCELLED)
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            return self._bad_command(r.POP_SYNTAX)
        return await self._auth_plain(text)

    async def _auth_plain(self, text: str) -> Response:
        # RFC 5034 §4: "=" is an initial response of zero length.
        try:
            raw = b"" if text == "=" else base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return self._bad_command(r.POP_SYNTAX)
        # RFC 4616 §2: authzid NUL authcid NUL passwd.
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            return await self._failed_login("<malformed PLAIN>")
        try:
            authzid, authcid, passwd = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            return await self._failed_login("<non-UTF-8 PLAIN>")
        if not authcid or (authzid and authzid != authcid):
            # No proxy authorization: acting as another user is refused.
            return await self._failed_login(authcid or "<empty>")
        return await self._login(authcid, passwd)

    async def _failed_login(
        self, login: str, started: float | None = None, text: str = r.POP_AUTH_FAILED
    ) -> Response:
        self._auth_failures += 1
        log.info(
            "pop3 login-failed user=%r peer=%s attempt=%d",
            login[:100],
            self.client_ip,
            self._auth_failures,
        )
        # Every failure takes the same total time from its start, whether the
        # account exists or not; each connection waits alone, others are unaffected.
        loop = asyncio.get_running_loop()
        begun = loop.time() if started is None else started
        left = begun + self.ctx.options.failed_login_delay - loop.time()
        if left > 0:
            await asyncio.sleep(left)
        if self._auth_failures >= self.ctx.options.max_auth_failures:
            return _err(r.POP_TOO_MANY_AUTH, Action.CLOSE)
        return _err(text)

    async def _login(self, login: str, password: str) -> Response:
        started = asyncio.get_running_loop().time()
        try:
            handle = await self.ctx.backend.authenticate(login, password, self.client_ip)
        except LoginThrottled:
            log.info("pop3 login-throttled user=%r peer=%s", login[:100], self.client_ip)
            return await self._failed_login(login, started, r.POP_LOGIN_THROTTLED)
        except LoginDisabled:
            log.info("pop3 login-disabled user=%r peer=%s", login[:100], self.client_ip)
            await asyncio.sleep(self.ctx.options.failed_login_delay)
            return _err(r.POP_LOGIN_DISABLED)
        if handle is None:
            return await self._failed_login(login, started)
        # Credentials first, lock second: a wrong password learns nothing about sessions.
        if not self.ctx.locks.acquire(handle.key):
            log.info("pop3 in-use user=%r peer=%s", login[:100], self.client_ip)
            return _err(r.POP_IN_USE)
        try:
            messages = await asyncio.to_thread(handle.maildir.messages)
        except OSError as exc:
            self.ctx.locks.release(handle.key)
            raise ProtocolError(r.POP_SYS_TEMP, user_side=False, detail=f"listing: {exc}") from exc
        self.handle = handle
        self._messages = messages
        self._sized = all(m.size is not None for m in messages)
        self.state = State.TRANSACTION
        log.info(
            "pop3 login user=%r mailbox=%s peer=%s tls=%s messages=%d",
            login[:100],
            handle.key,
            self.client_ip,
            self.tls,
            len(messages),
        )
        await self._notify_login(handle)
        if not self._sized:
            # Sizes another program's mail does not carry in its name are
            # measured when a command asks for them, never at login.
            return _ok(f"Logged in, {len(messages)} messages")
        count, octets = self._totals()
        return _ok(f"Logged in, {count} messages ({octets} octets)")

    async def _notify_login(self, handle: MailboxHandle) -> None:
        if self.ctx.on_login is None:
            return
        try:
            result = self.ctx.on_login(handle, self.client_ip)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # POP-before-SMTP bookkeeping must not cost the user their mail.
            log.exception("pop3 on_login hook failed mailbox=%s", handle.key)

    # -- TRANSACTION ------------------------------------------------------------------------

    async def _sizes(self) -> None:
        """Make every listed size known (reads the files whose names lack `,W=`, once)."""
        if self._sized:
            return
        assert self.handle is not None
        try:
            self._messages = await asyncio.to_thread(self.handle.maildir.measure, self._messages)
        except OSError as exc:
            raise ProtocolError(r.POP_SYS_TEMP, user_side=False, detail=f"sizing: {exc}") from exc
        self._sized = True

    async def _after_sizes(self, method: Callable[[str], Answer], arg: str) -> Response:
        """Measure the sizes, then answer the command (now without I/O)."""
        await self._sizes()
        answer = method(arg)
        assert isinstance(answer, Response)
        return answer

    def _size(self, info: MessageInfo) -> int:
        assert info.size is not None, "call _sizes() first"
        return info.size

    def _totals(self) -> tuple[int, int]:
        live = [m for i, m in enumerate(self._messages) if i not in self._deleted]
        return len(live), sum(self._size(m) for m in live)

    def _pick(self, text: str) -> tuple[int, MessageInfo]:
        number = parse_number(text)
        if number is None:
            raise _Syntax
        index = number - 1
        if not 0 <= index < len(self._messages):
            raise ProtocolError(r.POP_NO_SUCH_MESSAGE, detail=f"message {number} out of range")
        if index in self._deleted:
            raise ProtocolError(r.POP_MESSAGE_DELETED, detail=f"message {number} deleted")
        return number, self._messages[index]

    def _wire_now(self, info: MessageInfo) -> bytes | None:
        """The wire bytes of a small message, read here; None when it is big (use a thread)."""
        assert self.handle is not None
        known = info.stored if info.stored is not None else info.size
        if known is not None and known > INLINE_READ_MAX:
            return None
        try:
            data = self.handle.maildir.read_small(info.uid, INLINE_READ_MAX, info.stored)
        except KeyError as exc:
            raise ProtocolError(r.POP_MESSAGE_GONE, detail=f"uid {info.uid} vanished") from exc
        except OSError as exc:
            raise ProtocolError(r.POP_SYS_TEMP, user_side=False, detail=f"reading: {exc}") from exc
        return None if data is None else self._checked(info, to_wire(data))

    async def _wire_in_thread(self, info: MessageInfo) -> bytes:
        assert self.handle is not None
        try:
            data = await asyncio.to_thread(self.handle.maildir.read, info.uid)
        except KeyError as exc:
            raise ProtocolError(r.POP_MESSAGE_GONE, detail=f"uid {info.uid} vanished") from exc
        except OSError as exc:
            raise ProtocolError(r.POP_SYS_TEMP, user_side=False, detail=f"reading: {exc}") from exc
        return self._checked(info, to_wire(data))

    @staticmethod
    def _checked(info: MessageInfo, wire: bytes) -> bytes:
        if info.size is not None and len(wire) != info.size:
            log.warning(
                "pop3 size-mismatch uid=%s listed=%d actual=%d", info.uid, info.size, len(wire)
            )
        return wire

    def pop3_STAT(self, arg: str) -> Answer:
        """RFC 1939 §5 STAT: count and octets of the messages not marked deleted."""
        if arg:
            raise _Syntax
        if not self._sized:
            return self._after_sizes(self.pop3_STAT, arg)
        count, octets = self._totals()
        return _ok(f"{count} {octets}")

    def pop3_LIST(self, arg: str) -> Answer:
        """RFC 1939 §5 LIST [msg]."""
        args = arg.split()
        if len(args) > 1:
            raise _Syntax
        if args:
            self._pick(args[0])  # a bad number is refused before any file is read
        if not self._sized:
            return self._after_sizes(self.pop3_LIST, arg)
        if args:
            number, info = self._pick(args[0])
            return _ok(f"{number} {self._size(info)}")
        count, octets = self._totals()
        lines = [
            f"{i + 1} {self._size(m)}"
            for i, m in enumerate(self._messages)
            if i not in self._deleted
        ]
        return Response(multiline_lines(f"{r.POP_OK} {count} messages ({octets} octets)", lines))

    def pop3_UIDL(self, arg: str) -> Answer:
        """RFC 1939 §7 UIDL [msg]: ids that never change (guarantee 9)."""
        args = arg.split()
        if len(args) > 1:
            raise _Syntax
        if args:
            number, info = self._pick(args[0])
            return _ok(f"{number} {pop_uid(info.uid)}")
        lines = [
            f"{i + 1} {pop_uid(m.uid)}"
            for i, m in enumerate(self._messages)
            if i not in self._deleted
        ]
        return Response(multiline_lines(f"{r.POP_OK} Unique-ID listing follows", lines))

    def pop3_RETR(self, arg: str) -> Answer:
        """RFC 1939 §5 RETR msg: CRLF, dot-stuffed, ending `.` CRLF."""
        args = arg.split()
        if len(args) != 1:
            raise _Syntax
        number, info = self._pick(args[0])
        wire = self._wire_now(info)
        if wire is None:
            return self._retr_later(number, info)
        self._retrieved.add(number - 1)
        return Response(multiline(f"{r.POP_OK} {len(wire)} octets", wire))

    async def _retr_later(self, number: int, info: MessageInfo) -> Response:
        wire = await self._wire_in_thread(info)
        self._retrieved.add(number - 1)
        return Response(multiline(f"{r.POP_OK} {len(wire)} octets", wire))

    def pop3_TOP(self, arg: str) -> Answer:
        """RFC 1939 §7 TOP msg n: the header, the blank line and n body lines."""
        args = arg.split()
        if len(args) != 2:
            raise _Syntax
        lines = parse_number(args[1])
        if lines is None:
            raise _Syntax
        _, info = self._pick(args[0])
        wire = self._wire_now(info)
        if wire is None:
            return self._top_later(info, lines)
        return Response(multiline(f"{r.POP_OK} Top of message follows", top_of(wire, lines)))

    async def _top_later(self, info: MessageInfo, lines: int) -> Response:
        wire = await self._wire_in_thread(info)
        return Response(multiline(f"{r.POP_OK} Top of message follows", top_of(wire, lines)))

    def pop3_DELE(self, arg: str) -> Answer:
        """RFC 1939 §5 DELE msg: only marks; the file goes at QUIT."""
        args = arg.split()
        if len(args) != 1:
            raise _Syntax
        number, _ = self._pick(args[0])
        self._deleted.add(number - 1)
        return _ok(f"Message {number} deleted")

    def pop3_NOOP(self, arg: str) -> Answer:
        """RFC 1939 §5 NOOP."""
        if arg:
            raise _Syntax
        return _ok()

    def pop3_RSET(self, arg: str) -> Answer:
        """RFC 1939 §5 RSET: unmark every message marked deleted."""
        if arg:
            raise _Syntax
        self._deleted.clear()
        if not self._sized:
            return self._after_sizes(self.pop3_RSET, arg)
        count, octets = self._totals()
        return _ok(f"Maildrop has {count} messages ({octets} octets)")

    # -- UPDATE -----------------------------------------------------------------------------

    def pop3_QUIT(self, arg: str) -> Answer:
        """RFC 1939 §4/§6 QUIT: in TRANSACTION, enter UPDATE and remove marked messages."""
        if self.state is State.AUTHORIZATION:
            return Response(reply(r.POP_BYE), Action.CLOSE)
        return self._update()

    async def _update(self) -> Response:
        assert self.handle is not None
        self.state = State.UPDATE
        maildir, key = self.handle.maildir, self.handle.key
        doomed = [self._messages[i].uid for i in sorted(self._deleted)]
        # Only files still in new/ move; mail read in an earlier session is in cur/ already.
        seen = [
            info.uid
            for i in sorted(self._retrieved - self._deleted)
            if (info := self._messages[i]).in_new
        ]
        try:
            if doomed:
                freed = await asyncio.to_thread(maildir.delete, doomed)
                log.info("pop3 deleted mailbox=%s count=%d bytes=%d", key, len(doomed), freed)
        except OSError:
            log.exception("pop3 update-failed mailbox=%s", key)
            self.close()
            return _err(r.POP_UPDATE_FAILED, Action.CLOSE)
        if seen:
            try:
                # Like Dovecot: mail a POP3 client has read moves to cur/ as Seen.
                await asyncio.to_thread(maildir.mark_seen, seen)
            except OSError:
                log.warning("pop3 mark-seen failed mailbox=%s", key, exc_info=True)
        left = len(self._messages) - len(self._deleted)
        self.close()
        return Response(reply(f"{r.POP_BYE}, {left} messages left"), Action.CLOSE)
