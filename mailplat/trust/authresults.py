"""The Authentication-Results header (RFC 8601): write ours, drop forged ones.

Input: our host name (the authserv-id) and the SPF, DKIM, DMARC and ARC
results of one message. Output: one CRLF-terminated field, a method per
line, whose every value is a token or a quoted string and whose comments
carry no parenthesis or control character of the sender's, so nothing from
the network can end the field or fake another method. strip_ours() removes
every Authentication-Results field that arrived claiming our authserv-id
(RFC 8601 §5): only we may speak for our host name.
"""

from __future__ import annotations

import re

from mailplat.message.headers import header_block
from mailplat.trust import arc, dkim, dmarc, spf
from mailplat.trust.fields import Message, split

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+$")


def _value(text: str) -> str:
    """A pvalue: the text as a token, else as a quoted string (RFC 8601 §2.2)."""
    if text and _TOKEN.match(text):
        return text
    clean = "".join(c for c in text if c >= " " and c != "\x7f")
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


_NOT_IN_COMMENT = re.compile(r"[\x00-\x1f()\\\x7f]")


def _comment(text: str) -> str:
    clean = _NOT_IN_COMMENT.sub("", text)[:120].strip()
    return f" ({clean})" if clean else ""


def header(
    authserv_id: str,
    *,
    spf_mailfrom: spf.Result | None,
    mailfrom: str,
    spf_helo: spf.Result | None,
    helo: str,
    dkim_results: list[dkim.Result],
    dmarc_result: dmarc.Result | None,
    arc_result: arc.Result | None,
    note: str = "",
) -> bytes:
    """One Authentication-Results field with a line per method."""
    parts: list[str] = []
    if spf_mailfrom is not None:
        parts.append(
            f"spf={spf_mailfrom.result}{_comment(spf_mailfrom.reason)} "
            f"smtp.mailfrom={_value(mailfrom)}"
        )
    if spf_helo is not None:
        parts.append(f"spf={spf_helo.result}{_comment(spf_helo.reason)} smtp.helo={_value(helo)}")
    if not dkim_results:
        parts.append("dkim=none")
    for r in dkim_results:
        props = (
            f"header.d={_value(r.domain or 'unknown')} header.s={_value(r.selector or 'unknown')}"
        )
        if r.algorithm:
            props += f" header.a={_value(r.algorithm)}"
        if r.b:
            props += f" header.b={_value(r.b)}"
        parts.append(f"dkim={r.result}{_comment(r.reason)} {props}")
    if dmarc_result is not None:
        shown = f"p={dmarc_result.published}" if dmarc_result.published else dmarc_result.reason
        if note:
            shown = f"{shown}; {note}"
        line = f"dmarc={dmarc_result.result}{_comment(shown)}"
        if dmarc_result.from_domain:
            line += f" header.from={_value(dmarc_result.from_domain)}"
        parts.append(line)
    if arc_result is not None:
        sealed = ""
        if arc_result.sealer:
            sealed = f"i={arc_result.instances} sealed by {arc_result.sealer}"
        parts.append(f"arc={arc_result.result}{_comment(sealed)}")
    body = ";\r\n\t".join(parts) if parts else "none"
    return f"Authentication-Results: {authserv_id};\r\n\t{body}\r\n".encode("utf-8", "replace")


def authserv_id_of(value: str) -> str:
    """The authserv-id an Authentication-Results value starts with (before `;`)."""
    first = value.split(";", 1)[0]
    # Comments may stand around it (RFC 8601 §2.2): drop them, then the optional version.
    words = re.sub(r"\([^)]*\)", " ", first).split()
    return words[0].lower() if words else ""


def strip_ours(data: bytes, authserv_id: str, message: Message | None = None) -> tuple[bytes, int]:
    """The message without Authentication-Results fields claiming `authserv_id`; how many."""
    ours = authserv_id.lower()
    if message is None:
        if b"authentication-results" not in header_block(data).lower():
            return data, 0  # the usual case, found in C
        message = split(data)
    claimed = [
        f
        for f in message.fields
        if f.name == "authentication-results" and authserv_id_of(f.value) == ours
    ]
    if not claimed:
        return data, 0
    kept = tuple(f for f in message.fields if f not in claimed)
    rebuilt = type(message)(kept, message.body, message.has_separator)
    return rebuilt.to_bytes(), len(claimed)
