"""aiosmtpd handler: the policy hooks of one SMTP listener.

aiosmtpd polices each command line and calls `handle_VERB`; these hooks
return the reply. The Directory snapshot is taken at MAIL FROM and kept for
the whole transaction, so a reload never changes the rules mid-transaction.
At DATA the message is checked (bare CR/LF, hop count), given its Received
header and handed to the context, which makes it durable (fsync file and
directory) before we answer 250.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session

from mailplat.auth.relay import Client
from mailplat.config.directory import Directory
from mailplat.connectors.smtp_in.dnschecks import check_client, check_sender_domain
from mailplat.connectors.smtp_in.policy import check_rcpt, check_sender
from mailplat.core import replies
from mailplat.core.address import Address, parse_address
from mailplat.core.envelope import Envelope
from mailplat.core.errors import AddressError, TemporaryFailure
from mailplat.core.ids import new_id
from mailplat.dns.resolver import Resolver
from mailplat.message import headers

if TYPE_CHECKING:
    from mailplat.connectors.smtp_in.listener import MailplatSMTP

log = logging.getLogger("mailplat.smtp")


class InboundContext(Protocol):
    """What an SMTP listener needs from the running server (wired in runtime)."""

    @property
    def directory(self) -> Directory: ...

    async def accept(self, env: Envelope, data: bytes) -> str:
        """Make the message durable (fsynced) and queue it for routing; return its id."""
        ...

    def pop_before_smtp(self, ip: str) -> bool: ...

    def mailbox_full(self, key: str) -> bool: ...

    def record_failure(self, ip: str) -> None: ...

    def resolver(self) -> Resolver:
        """The DNS resolver for the current config's dns_servers."""
        ...


def _null(address: str) -> bool:
    return address in ("", "<>")


class InboundHandler:
    """Hooks for aiosmtpd; one instance per listener, state lives on the SMTP session."""

    def __init__(self, context: InboundContext, kind: str) -> None:
        self.context = context
        self.kind = kind  # smtp | submission | smtps

    # aiosmtpd hook signatures: (server, session, envelope, ...) -> reply string or MISSING.

    async def handle_EHLO(
        self,
        server: MailplatSMTP,
        session: Session,
        envelope: SmtpEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        extra = ["250-PIPELINING", "250-ENHANCEDSTATUSCODES"]
        if server.implicit_tls or not server.may_auth_now():
            # Hide AUTH until TLS where AUTH needs TLS (aiosmtpd already does for STARTTLS).
            responses = [
                r for r in responses if not r.startswith("250-AUTH") or server.may_auth_now()
            ]
        return [responses[0], *extra, *responses[1:]]

    async def handle_MAIL(
        self,
        server: MailplatSMTP,
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str | None:
        server.snapshot = self.context.directory
        sender: Address | None = None
        if not _null(address):
            try:
                sender = parse_address(address)
            except AddressError as exc:
                log.info(
                    "smtp mail-from-rejected peer=%s from=%r why=%s", server.peer_ip, address, exc
                )
                return await server.fail(replies.S501_BAD_ADDRESS)
        reply = check_sender(server.snapshot, sender, server.login_key)
        if reply:
            log.info(
                "smtp mail-from-rejected peer=%s from=%s login=%s",
                server.peer_ip,
                address,
                server.login_key,
            )
            return await server.fail(reply)
        reply = await self._dns_checks(server, sender)
        if reply:
            return await server.fail(reply)
        envelope.mail_from = "" if sender is None else str(sender)
        envelope.mail_options.extend(mail_options)
        server.sender = sender
        server.null_sender = sender is None
        return replies.S250_SENDER_OK

    async def _dns_checks(self, server: MailplatSMTP, sender: Address | None) -> str | None:
        """PTR/DNSBL for unauthenticated clients (once per session), then the sender domain."""
        directory = server.snapshot or self.context.directory
        security = directory.site.security
        wants_client = security.require_ptr or any(b.enabled for b in security.dnsbl)
        if wants_client and not server.login_key:
            if server.client_verdict is None:
                verdict = await check_client(security, self.context.resolver(), server.peer_ip)
                server.client_verdict = verdict or ""
            if server.client_verdict:
                return server.client_verdict
        if (
            sender is not None
            and security.reject_invalid_sender_domain
            and sender.domain not in directory.domains
            and not sender.is_literal
        ):
            return await check_sender_domain(self.context.resolver(), sender.domain)
        return None

    async def handle_RCPT(
        self,
        server: MailplatSMTP,
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str | None:
        directory = server.snapshot or self.context.directory
        if len(envelope.rcpt_tos) >= directory.site.smtp.max_recipients:
            return replies.S452_TOO_MANY_RCPTS
        try:
            rcpt = parse_address(address)
        except AddressError as exc:
            log.info("smtp rcpt-rejected peer=%s to=%r why=%s", server.peer_ip, address, exc)
            return await server.fail(replies.S553_BAD_MAILBOX)
        client = Client(
            ip=server.peer_ip,
            login=server.login_key,
            sender=server.sender,
            pop_before_smtp=self.context.pop_before_smtp(server.peer_ip),
        )
        verdict = check_rcpt(directory, client, rcpt, self.context.mailbox_full)
        if verdict.reply is not None:
            log.info(
                "smtp rcpt-rejected peer=%s from=%s to=%s reply=%r why=%s",
                server.peer_ip,
                envelope.mail_from or "<>",
                rcpt,
                verdict.reply[:3],
                verdict.reason,
            )
            if verdict.failure:
                return await server.fail(verdict.reply)
            return verdict.reply
        envelope.rcpt_tos.append(str(rcpt))
        return replies.S250_RCPT_OK

    async def handle_VRFY(
        self, server: MailplatSMTP, session: Session, envelope: SmtpEnvelope, address: str
    ) -> str:
        directory = self.context.directory
        if "VRFY" not in directory.site.smtp.allowed_commands:
            return replies.S252_CANNOT_VRFY
        try:
            parsed = parse_address(address)
        except AddressError:
            return replies.S501_BAD_ADDRESS
        entry = directory.addresses.get(parsed.key)
        if entry is None:
            return replies.S550_NO_SUCH_USER
        return f"250 2.1.5 <{parsed.key}>"

    async def handle_DATA(
        self, server: MailplatSMTP, session: Session, envelope: SmtpEnvelope
    ) -> str:
        directory = server.snapshot or self.context.directory
        raw: bytes = envelope.original_content or b""
        # RFC 5321 §2.3.8 / SMTP smuggling: a bare CR or LF could hide a second
        # message from a downstream server; refuse the message whole.
        if headers.has_bare_line_ending(raw):
            log.warning("smtp bare-line-ending peer=%s from=%s", server.peer_ip, envelope.mail_from)
            return replies.S550_BARE_LINE_ENDING
        if headers.hop_count(raw) > directory.site.smtp.max_hops:
            log.warning(
                "smtp loop peer=%s from=%s hops>%d",
                server.peer_ip,
                envelope.mail_from,
                directory.site.smtp.max_hops,
            )
            return replies.S554_LOOP
        trace_id = new_id()
        server_name = directory.site.server.host_name
        shown_ip = "127.0.0.1" if directory.site.security.hide_client_ip else server.peer_ip
        rcpts = tuple(envelope.rcpt_tos)
        prefix = headers.received(
            helo=session.host_name or "",
            client_ip=shown_ip,
            host_name=server_name,
            protocol=server.protocol_name(),
            trace_id=trace_id,
            rcpt=rcpts[0] if len(rcpts) == 1 else None,
        )
        if server.login_key and directory.site.delivery.add_missing_headers:
            prefix += headers.missing_headers(raw, server_name)
        env = Envelope(
            mail_from=envelope.mail_from or "",
            rcpts=rcpts,
            trace_id=trace_id,
            received_at=time.time(),
            client_ip=server.peer_ip,
            helo=session.host_name or "",
            auth_login=server.login_key or "",
            # The config this transaction was decided with: the MTA routes it by
            # the same one even when a reload lands before routing.
            meta=(("config", directory.digest),),
        )
        try:
            queue_id = await self.context.accept(env, prefix + raw)
        except TemporaryFailure as exc:
            log.error("smtp spool-full id=%s why=%s", trace_id, exc)
            return replies.S452_NO_SPACE
        log.info(
            "smtp accepted id=%s trace=%s peer=%s from=%s rcpts=%d size=%d",
            queue_id,
            trace_id,
            server.peer_ip,
            env.mail_from or "<>",
            len(rcpts),
            len(raw),
        )
        return f"250 2.0.0 OK queued as {queue_id}"

    async def handle_exception(self, error: Exception) -> str:
        # Never show a traceback or an internal message to the client.
        log.exception("smtp internal-error: %s", error)
        return replies.S451_LOCAL_ERROR
