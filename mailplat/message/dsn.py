"""RFC 3464 delivery status notifications (bounces and delay notices).

Input: the original envelope facts, the message bytes, and one RecipientStatus
per failed or delayed recipient. Output: the bytes of a multipart/report
message (CRLF) to be sent from the null sender `<>`; callers must never
bounce a message whose own sender is null (RELIABILITY.md guarantee 8).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import format_datetime, localtime, make_msgid

from mailplat.config.directory import Directory
from mailplat.core.envelope import Envelope
from mailplat.core.ids import new_id
from mailplat.message.headers import _clean, _utc, header_block, to_crlf


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """What happened to one recipient (RFC 3464 §2.3)."""

    rcpt: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # enhanced status code, e.g. 5.1.1
    diagnostic: str = ""  # e.g. "smtp; 550 5.1.1 No such user"
    remote_mta: str = ""
    original_rcpt: str = ""
    will_retry_until: float | None = None  # delay notices: when we give up (RFC 3464 §2.3.9)


def compose(
    *,
    reporting_mta: str,
    postmaster: str,
    original_sender: str,
    original_id: str,
    arrival: float,
    statuses: list[RecipientStatus],
    data: bytes | None,
    delayed: bool = False,
    explanation: str | None = None,
) -> bytes:
    """A complete DSN message addressed to original_sender.

    data None means the message's text is lost: the report then has no third
    part (RFC 3462 §2 makes it optional); `explanation` replaces the usual
    first paragraph of the human-readable part.
    """
    boundary = f"=_mailplat_{make_msgid().strip('<>').replace('@', '_')}"
    subject = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    human_lines = [
        f"This is the mail system at {reporting_mta}.",
        "",
        explanation
        or (
            "Your message could not be delivered yet to the recipients below; it will be retried."
            if delayed
            else "Your message could not be delivered to one or more recipients. "
            "It is attached below."
        ),
        "",
    ]
    for st in statuses:
        human_lines.append(f"<{st.rcpt}>: {st.diagnostic or st.status}")
    human = "\r\n".join(_clean(line) for line in human_lines) + "\r\n"

    per_message = (
        f"Reporting-MTA: dns; {_clean(reporting_mta)}\r\n"
        f"X-Mailplat-Queue-ID: {_clean(original_id)}\r\n"
        f"Arrival-Date: {format_datetime(localtime(_utc(arrival)))}\r\n"
    )
    per_rcpt = ""
    for st in statuses:
        per_rcpt += "\r\n"
        if st.original_rcpt:
            per_rcpt += f"Original-Recipient: rfc822; {_clean(st.original_rcpt)}\r\n"
        per_rcpt += f"Final-Recipient: rfc822; {_clean(st.rcpt)}\r\n"
        per_rcpt += f"Action: {st.action}\r\n"
        per_rcpt += f"Status: {st.status}\r\n"
        if st.remote_mta:
            per_rcpt += f"Remote-MTA: dns; {_clean(st.remote_mta)}\r\n"
        if st.diagnostic:
            per_rcpt += f"Diagnostic-Code: {_clean(st.diagnostic)}\r\n"
        per_rcpt += f"Last-Attempt-Date: {format_datetime(localtime())}\r\n"
        if st.will_retry_until is not None:
            until = format_datetime(localtime(_utc(st.will_retry_until)))
            per_rcpt += f"Will-Retry-Until: {until}\r\n"

    top = (
        f"From: Mail Delivery System <{_clean(postmaster)}>\r\n"
        f"To: <{_clean(original_sender)}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {format_datetime(localtime())}\r\n"
        f"Message-ID: {make_msgid(domain=reporting_mta)}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Description: Notification\r\n"
        "\r\n"
        f"{human}"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n"
        "Content-Description: Delivery report\r\n"
        "\r\n"
        f"{per_message}{per_rcpt}"
    ).encode("utf-8", "surrogateescape")
    if data is None:
        return top + f"\r\n--{boundary}--\r\n".encode()
    headers = to_crlf(header_block(data)).rstrip(b"\r\n") + b"\r\n"
    returned = (
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "Content-Description: Undelivered message headers\r\n"
        "\r\n"
    ).encode()
    return top + returned + headers + f"\r\n--{boundary}--\r\n".encode()


def autoreply(
    *, sender: str, to: str, subject: str, body: str, in_reply_to: str | None, host: str
) -> bytes:
    """An RFC 3834 auto-reply."""
    lines = [
        f"From: <{_clean(sender)}>",
        f"To: <{_clean(to)}>",
        f"Subject: {_clean(subject)}",
        f"Date: {format_datetime(localtime())}",
        f"Message-ID: {make_msgid(domain=host)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    if in_reply_to:
        lines.append(f"In-Reply-To: {_clean(in_reply_to)}")
        lines.append(f"References: {_clean(in_reply_to)}")
    text = "\r\n".join(lines) + "\r\n\r\n" + body
    return to_crlf(text.encode("utf-8")).rstrip(b"\r\n") + b"\r\n"


def bounce_for(
    directory: Directory,
    env: Envelope,
    data: bytes,
    statuses: list[RecipientStatus],
    delayed: bool = False,
) -> tuple[Envelope, bytes] | None:
    """The envelope and bytes of a DSN for `env`, or None when none may be sent.

    None for a null sender (a bounce is never bounced, RFC 5321 §6.1) and when
    the site turned non-delivery reports off.
    """
    if not env.mail_from or directory.site.delivery.no_ndr:
        return None
    return _report(directory, env, statuses, data=data, delayed=delayed)


def _report(
    directory: Directory,
    env: Envelope,
    statuses: list[RecipientStatus],
    *,
    data: bytes | None,
    delayed: bool = False,
    explanation: str | None = None,
) -> tuple[Envelope, bytes]:
    """A report to env's sender from our postmaster, with a null sender of its own."""
    server = directory.site.server
    message = compose(
        reporting_mta=server.host_name,
        postmaster=server.notification_sender or f"postmaster@{server.local_domain}",
        original_sender=env.mail_from,
        original_id=env.trace_id,
        arrival=env.received_at,
        statuses=statuses,
        data=data,
        delayed=delayed,
        explanation=explanation,
    )
    report_env = Envelope(
        mail_from="",
        rcpts=(env.mail_from,),
        trace_id=new_id(),
        received_at=time.time(),
        meta=(("bounce-of", env.trace_id),),
    )
    return report_env, message


def lost_for(
    directory: Directory,
    env: Envelope,
    why: str,
    body_lost: bool,
) -> tuple[Envelope, bytes] | None:
    """A DSN telling env's sender that their message was damaged in our spool, or None.

    The envelope (sender, recipients) survived, the text did not (body_lost)
    or its delivery record did not: either way these recipients will not get
    it from us, so each is reported failed and the sender is asked to send
    it again. Nothing is attached: the damaged text is not trusted.
    """
    what = "its text" if body_lost else "its delivery record"
    explanation = (
        f"Your message was damaged in this server's storage before it could be delivered "
        f"({what} failed its integrity check: {why}). It was set aside and will not be "
        "delivered to the recipients below; please send it again."
    )
    statuses = [
        RecipientStatus(
            rcpt=r,
            action="failed",
            status="5.3.0",
            diagnostic=f"x-mailplat; message damaged in the spool ({why})",
        )
        for r in env.rcpts
    ]
    if not env.mail_from or directory.site.delivery.no_ndr or not statuses:
        return None
    return _report(directory, env, statuses, data=None, explanation=explanation)
