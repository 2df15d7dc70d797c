"""Policy of one SMTP listener: what MAIL, RCPT, DATA, VRFY, EXPN and ETRN answer.

The session (session.py) parses and sequences; these methods decide, from the
Directory snapshot taken at MAIL FROM (a reload never changes the rules
mid-transaction) and the running server (the InboundContext). At DATA the
message gets its Received header and is handed to the context, which makes
it durable (file and directory fsynced) before we answer 250.

Sender authentication (mailplat.trust, when authentication.verify is on) is
for mail from other servers: the smtp listener, no AUTH, not a client of
security.ip_whitelist. SPF is checked at the first RCPT for one of our
domains (a domain set to reject SPF fail refuses there); DKIM, DMARC and ARC
at DATA, which adds the Authentication-Results header, refuses a DMARC
p=reject failure or a forged local From, or marks the message for the Junk
folder (envelope meta `junk`). Authentication-Results claiming our host name
that came from outside are removed in any case.

Sizes are refused before the data is sent wherever they can be (RFC 1870):
a declared SIZE over the limit (552 5.3.4) or over the free disk space
(452 4.3.1) at MAIL, over a recipient's quota at RCPT (552 5.2.2 when it can
never fit, 452 4.2.2 when the mailbox is too full now); and a one-recipient
message that would overflow its mailbox gets 552 5.2.2 at the end of DATA
instead of a 250 and a bounce to a sender who may be forged (backscatter).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, localtime
from typing import TYPE_CHECKING, Protocol

from mailplat.auth.logins import Logins
from mailplat.auth.relay import Client
from mailplat.config.directory import Directory, Kind
from mailplat.connectors.smtp_in.dnschecks import check_client, check_sender_domain
from mailplat.connectors.smtp_in.policy import check_rcpt, check_sender
from mailplat.connectors.smtp_in.wire import helo_for_header
from mailplat.core import replies
from mailplat.core.address import Address, parse_address
from mailplat.core.envelope import Envelope
from mailplat.core.errors import AddressError, TemporaryFailure
from mailplat.core.ids import new_id
from mailplat.core.netmatch import ip_matches
from mailplat.dns.resolver import Resolver
from mailplat.message import headers
from mailplat.trust import inbound
from mailplat.trust.authresults import strip_ours

if TYPE_CHECKING:
    from mailplat.connectors.smtp_in.session import SmtpSession, Transaction

log = logging.getLogger("mailplat.smtp")


class InboundContext(Protocol):
    """What an SMTP listener needs from the running server (wired in runtime)."""

    @property
    def directory(self) -> Directory: ...

    @property
    def logins(self) -> Logins: ...

    async def accept(self, env: Envelope, data: bytes) -> str:
        """Make the message durable (fsynced) and queue it for routing; return its id."""
        ...

    def pop_before_smtp(self, ip: str) -> bool: ...

    def mailbox_room(self, key: str) -> int | None:
        """Bytes the mailbox can still take (None: no quota)."""
        ...

    def disk_room(self, size: int) -> bool:
        """True when the spool's disk can take `size` more bytes and keep its reserve."""
        ...

    def resolver(self) -> Resolver:
        """The DNS resolver for the current config's dns_servers."""
        ...

    async def etrn(self, domain: str) -> int:
        """Retry now the queued mail for `domain`; how many messages that is."""
        ...


@dataclass(frozen=True, slots=True)
class RcptAnswer:
    """RCPT's outcome: a refusal (None = accepted), and the mailbox it reaches directly."""

    reply: str | None
    failure: bool = False
    mailbox: str | None = None


def received_header(
    *,
    helo: str,
    client_ip: str,
    host_name: str,
    protocol: str,
    trace_id: str,
    rcpt: str | None,
    when: float | None = None,
) -> bytes:
    """A Received: field (RFC 5321 §4.4), folded over three lines.

    The HELO name is shown only when it is a domain or an address literal;
    anything else becomes `unknown` with a sanitised comment, so nothing a
    client says can break out of the header.
    """
    name, comment = helo_for_header(helo)
    date = _date(int(when if when is not None else time.time()))
    tcp_info = f"{comment} [{client_ip}]" if comment else f"[{client_ip}]"
    for_part = f"\r\n\tfor <{_clean(rcpt)}>" if rcpt else ""
    return (
        f"Received: from {name} ({tcp_info})\r\n"
        f"\tby {_clean(host_name)} (mailplat) with {protocol} id {trace_id}"
        f"{for_part}; {date}\r\n"
    ).encode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """An RFC 5322 date in local time; the same second is formatted once."""
    return format_datetime(localtime(datetime.fromtimestamp(second, UTC)))


class InboundHandler:
    """The policy of one listener kind; state lives on the session."""

    def __init__(self, context: InboundContext, kind: str) -> None:
        self.context = context
        self.kind = kind  # smtp | submission | smtps

    # -- MAIL ----------------------------------------------------------------------

    async def mail(
        self, session: SmtpSession, sender: Address | None, declared: int | None
    ) -> str | None:
        """None to accept the sender, else the refusal."""
        directory = session.directory
        smtp = directory.site.smtp
        limit = smtp.max_message_size_kb * 1024 if smtp.enforce_max_message_size else 0
        if declared is not None and limit and declared > limit:
            log.info("smtp too-big peer=%s declared=%d", session.peer_ip, declared)
            return replies.S552_TOO_BIG
        if not self.context.disk_room(declared or 0):
            log.warning("smtp disk-low peer=%s declared=%s", session.peer_ip, declared)
            return replies.S452_NO_SPACE
        reply = check_sender(directory, sender, session.login_key)
        if reply:
            log.info(
                "smtp mail-from-rejected peer=%s from=%s login=%s",
                session.peer_ip,
                sender,
                session.login_key,
            )
            return reply
        return await self._dns_checks(session, sender)

    async def _dns_checks(self, session: SmtpSession, sender: Address | None) -> str | None:
        """PTR/DNSBL for unauthenticated clients (once per session), then the sender domain."""
        directory = session.directory
        security = directory.site.security
        wants_client = security.require_ptr or any(b.enabled for b in security.dnsbl)
        if wants_client and not session.login_key:
            if session.client_verdict is None:
                verdict = await check_client(security, self.context.resolver(), session.peer_ip)
                session.client_verdict = verdict or ""
            if session.client_verdict:
                return session.client_verdict
        if (
            sender is not None
            and security.reject_invalid_sender_domain
            and sender.domain not in directory.domains
            and not sender.is_literal
        ):
            return await check_sender_domain(self.context.resolver(), sender.domain)
        return None

    # -- RCPT ----------------------------------------------------------------------

    async def rcpt(self, session: SmtpSession, tx: Transaction, rcpt: Address) -> RcptAnswer:
        directory = session.directory
        client = Client(
            ip=session.peer_ip,
            login=session.login_key,
            sender=tx.sender,
            pop_before_smtp=self.context.pop_before_smtp(session.peer_ip),
        )
        verdict = check_rcpt(
            directory, client, rcpt, self.context.mailbox_room, tx.declared_size or 0
        )
        if verdict.reply is None and self._verifies(session, directory):
            refusal = await self._spf(session, tx, rcpt)
            if refusal is not None:
                return RcptAnswer(refusal, refusal.startswith("5"))
        if verdict.reply is not None:
            log.info(
                "smtp rcpt-rejected peer=%s from=%s to=%s reply=%s why=%s",
                session.peer_ip,
                tx.sender or "<>",
                rcpt,
                verdict.reply[:3],
                verdict.reason,
            )
            return RcptAnswer(verdict.reply, verdict.failure)
        return RcptAnswer(None, mailbox=verdict.mailbox)

    def _verifies(self, session: SmtpSession, directory: Directory) -> bool:
        """Sender authentication applies: mail from another server on the smtp listener."""
        return (
            self.kind == "smtp"
            and session.login_key is None
            and directory.site.authentication.verify
            and not ip_matches(session.peer_ip, directory.site.security.ip_whitelist)
        )

    def _rules(self, directory: Directory, domain: str) -> inbound.Rules:
        entry = directory.domains.get(domain)
        override = None
        if entry is not None:
            override = directory.config.postoffices[entry.postoffice].domains[domain].authentication
        return inbound.rules_for(directory.site.authentication, override)

    async def _spf(self, session: SmtpSession, tx: Transaction, rcpt: Address) -> str | None:
        """SPF, once per transaction at its first local recipient; a refusal or None."""
        directory = session.directory
        if not directory.is_local_domain(rcpt.domain):
            return None
        if tx.spf is None:
            tx.spf = await inbound.check_spf(
                self.context.resolver(),
                session.peer_ip,
                "" if tx.sender is None else str(tx.sender),
                session.helo or "",
                directory.site.authentication.time_budget_seconds,
            )
        refusal = inbound.spf_refusal(tx.spf, self._rules(directory, rcpt.domain))
        if refusal is not None:
            found = tx.spf.effective
            log.info(
                "smtp spf-refused peer=%s from=%s to=%s spf=%s why=%s",
                session.peer_ip,
                tx.sender or "<>",
                rcpt,
                found.result if found else "none",
                found.reason if found else "",
            )
        return refusal

    async def _authenticate(
        self, session: SmtpSession, tx: Transaction, raw: bytes
    ) -> inbound.Verdict:
        directory = session.directory
        site = directory.site
        sender = "" if tx.sender is None else str(tx.sender)
        client = inbound.Client(
            ip=session.peer_ip,
            helo=session.helo or "",
            sender=sender,
            privileged=ip_matches(session.peer_ip, site.relay.privileged_ips),
        )
        rules = [self._rules(directory, r.rsplit("@", 1)[-1].lower()) for r in tx.rcpts]
        verdict = await inbound.check_message(
            resolver=self.context.resolver(),
            data=raw,
            client=client,
            spf_verdict=tx.spf,
            auth=site.authentication,
            rules=rules,
            host_name=site.server.host_name,
            is_local=directory.is_local_domain,
        )
        fields = " ".join(f"{k}={v}" for k, v in verdict.summary.items())
        if verdict.reply is not None:
            log.info(
                "smtp auth-refused peer=%s from=%s reply=%r %s",
                session.peer_ip,
                sender or "<>",
                verdict.reply[:9],
                fields,
            )
        return verdict

    # -- DATA ----------------------------------------------------------------------

    async def data(self, session: SmtpSession, tx: Transaction, raw: bytes) -> str:
        directory = session.directory
        if headers.hop_count(raw) > directory.site.smtp.max_hops:
            log.warning(
                "smtp loop peer=%s from=%s hops>%d",
                session.peer_ip,
                tx.sender or "<>",
                directory.site.smtp.max_hops,
            )
            return replies.S554_LOOP
        if len(tx.rcpts) == 1 and tx.mailboxes[0] is not None:
            room = self.context.mailbox_room(tx.mailboxes[0])
            if room is not None and room < len(raw):
                log.info(
                    "smtp over-quota peer=%s mailbox=%s size=%d room=%d",
                    session.peer_ip,
                    tx.mailboxes[0],
                    len(raw),
                    room,
                )
                return replies.S552_MAILBOX_FULL
        junk = ""
        summary: dict[str, str] | None = None
        if self._verifies(session, directory):
            verdict = await self._authenticate(session, tx, raw)
            if verdict.reply is not None:
                return verdict.reply
            raw, junk, summary = verdict.data, verdict.junk, verdict.summary
        elif self.kind == "smtp" and session.login_key is None:
            # RFC 8601 §5: only we may write results in our host's name.
            raw, _ = strip_ours(raw, directory.site.server.host_name)
        trace_id = new_id()
        server_name = directory.site.server.host_name
        shown_ip = "127.0.0.1" if directory.site.security.hide_client_ip else session.peer_ip
        rcpts = tuple(tx.rcpts)
        prefix = received_header(
            helo=session.helo or "",
            client_ip=shown_ip,
            host_name=server_name,
            protocol=session.protocol_name(),
            trace_id=trace_id,
            rcpt=rcpts[0] if len(rcpts) == 1 else None,
        )
        if session.login_key and directory.site.delivery.add_missing_headers:
            prefix += headers.missing_headers(raw, server_name)
        env = Envelope(
            mail_from="" if tx.sender is None else str(tx.sender),
            rcpts=rcpts,
            trace_id=trace_id,
            received_at=time.time(),
            client_ip=session.peer_ip,
            helo=session.helo or "",
            auth_login=session.login_key or "",
            # The config this transaction was decided with: the MAIL routes it by
            # the same one even when a reload lands before routing.
            meta=(("config", directory.digest), *((("junk", junk),) if junk else ())),
        )
        try:
            queue_id = await self.context.accept(env, prefix + raw)
        except TemporaryFailure as exc:
            log.error("smtp spool-full id=%s why=%s", trace_id, exc)
            return replies.S452_NO_SPACE
        if summary is None:
            log.info(
                "smtp accepted id=%s peer=%s from=%s rcpts=%d size=%d",
                queue_id,
                session.peer_ip,
                env.mail_from or "<>",
                len(rcpts),
                len(raw),
            )
        else:
            # One line with the verdicts (not a second record: this is the hot path).
            log.info(
                "smtp accepted id=%s peer=%s from=%s rcpts=%d size=%d spf=%s dkim=%s "
                "dmarc=%s arc=%s junk=%s",
                queue_id,
                session.peer_ip,
                env.mail_from or "<>",
                len(rcpts),
                len(raw),
                summary.get("spf", ""),
                summary.get("dkim", ""),
                summary.get("dmarc", ""),
                summary.get("arc", ""),
                "yes" if junk else "no",
            )
        return f"250 2.0.0 OK queued as {queue_id}"

    @staticmethod
    def postmaster_domain(directory: Directory) -> str:
        """The domain a bare <Postmaster> stands for: the server's own, or its first domain."""
        local = directory.site.server.local_domain
        if local in directory.domains:
            return local
        found = _bare_candidates(directory, "postmaster")[0]
        return found.rpartition("@")[2]

    # -- VRFY, EXPN, ETRN ----------------------------------------------------------

    async def vrfy(self, session: SmtpSession, text: str) -> str:
        """RFC 5321 §3.5.1: when allowed, say what RCPT would say about the address."""
        directory = self.context.directory
        if "VRFY" not in directory.site.smtp.allowed_commands:
            return replies.S252_CANNOT_VRFY
        try:
            candidates = [parse_address(t) for t in _bare_candidates(directory, text)]
        except AddressError:
            return replies.S501_BAD_ADDRESS
        for address in candidates:
            if not directory.is_local_domain(address.domain):
                return replies.S252_CANNOT_VRFY
            step = directory.resolve(address)
            if step.kind not in (Kind.UNKNOWN, Kind.DISABLED):
                return f"250 2.1.5 <{address.key}>"
        return replies.S550_NO_SUCH_USER

    async def expn(self, session: SmtpSession, text: str) -> list[str]:
        """RFC 5321 §3.5.2: a group's members, one per line; nothing when not allowed."""
        directory = self.context.directory
        if "EXPN" not in directory.site.smtp.allowed_commands:
            return [replies.S502_NOT_IMPLEMENTED]
        try:
            candidates = [parse_address(t) for t in _bare_candidates(directory, text)]
        except AddressError:
            return [replies.S501_BAD_ADDRESS]
        parsed = next((c for c in candidates if c.key in directory.addresses), None)
        found = directory.addresses.get(parsed.key) if parsed else None
        if found is None or parsed is None:
            return [replies.S550_NO_SUCH_USER]
        kind, target = found
        if kind is Kind.GROUP:
            members = directory.groups[target].members
            if not members:
                return [replies.S550_NOT_A_GROUP]
            lines = [f"250-2.1.5 <{m}>" for m in members[:-1]]
            return [*lines, f"250 2.1.5 <{members[-1]}>"]
        if kind is Kind.MAILBOX:
            return [f"250 2.1.5 <{parsed.key}>"]
        # A mailing list's members are private (subscribers never agreed to be shown).
        return [replies.S252_CANNOT_EXPN]

    async def etrn(self, session: SmtpSession, text: str) -> str:
        """RFC 1985: start delivery of the mail queued for a domain we hold mail for, now."""
        node = text.strip()
        domain = node[1:] if node.startswith("@") else node
        if node.startswith("#") or not domain:
            return replies.S458_ETRN_UNABLE.format(node=_safe(node))
        try:
            parsed = parse_address(f"postmaster@{domain}")
        except AddressError:
            return replies.S501_SYNTAX
        # RFC 1985: a client asks for the mail we hold for it: the domains this
        # server is a backup MX for (their mail is forwarded to a smart host).
        # Anyone else's queue keeps its retry schedule.
        entry = session.directory.domains.get(parsed.domain)
        if entry is None or not entry.smart_host:
            return replies.S459_ETRN_NOT_ALLOWED.format(node=parsed.domain)
        count = await self.context.etrn(parsed.domain)
        log.info("smtp etrn peer=%s domain=%s messages=%d", session.peer_ip, parsed.domain, count)
        if count == 0:
            return replies.S251_ETRN_NOTHING.format(node=parsed.domain)
        return replies.S253_ETRN_STARTED.format(count=count, node=parsed.domain)


def _clean(value: str) -> str:
    """A header value with no CR, LF or other control characters."""
    return "".join(ch if ch >= " " and ch != "\x7f" else " " for ch in value)


def _bare_candidates(directory: Directory, text: str) -> list[str]:
    """An address as given, or a bare name on each domain of the default postoffice."""
    if "@" in text:
        return [text]
    default = directory.site.server.default_postoffice
    names = [f"{text}@{d.name}" for d in directory.domains.values() if d.postoffice == default]
    return names or [f"{text}@{directory.site.server.local_domain}"]


def _safe(text: str) -> str:
    return "".join(c if 0x20 < ord(c) < 0x7F else "?" for c in text[:64])
