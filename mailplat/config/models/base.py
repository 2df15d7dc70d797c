"""Shared model base and field types for the config models.

Every model is frozen and refuses unknown keys, so a typo is an error with a
"did you mean" hint rather than a silently ignored setting.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from mailplat.core.address import normalise_domain, parse_address
from mailplat.core.errors import AddressError


class Model(BaseModel):
    """Base of every config model: frozen, strict about unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _host_port(value: str) -> str:
    """`host:port`, `[v6]:port` or bare `host`; the port must be 1-65535."""
    host, port = split_host_port(value, default_port=None)
    if not host:
        raise ValueError("needs a host, e.g. 127.0.0.1:2525")
    if port is not None and not 0 <= port < 65536:
        raise ValueError("port must be between 0 (any free port) and 65535")
    return value


def split_host_port(value: str, default_port: int | None) -> tuple[str, int | None]:
    """Split `host:port`; IPv6 addresses go in brackets (`[::1]:25`)."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError("unterminated [ in IPv6 address")
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("expected :port after ]")
        port_text = rest[1:] if rest else ""
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host, port_text = value, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit():
        raise ValueError(f"port {port_text!r} is not a number")
    return host, int(port_text)


def _ip_pattern(value: str) -> str:
    """An IP, a CIDR range, or an IPv4 pattern with `*` wildcards (`192.168.*.*`)."""
    if "*" in value:
        parts = value.split(".")
        if len(parts) != 4 or any(p != "*" and not (p.isdigit() and int(p) < 256) for p in parts):
            raise ValueError("a wildcard pattern has four parts, each a number or *")
        return value
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP, CIDR range or wildcard pattern") from exc
    return value


# An ASCII domain of LDH labels, no trailing dot: normalise_domain would only
# lower-case it (the property test of simple_email covers this pattern too).
_SIMPLE_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def simple_domain(value: str) -> str | None:
    """The normal form of a plain ASCII domain without the IDNA codec, or None."""
    if len(value) > 253 or not _SIMPLE_DOMAIN.fullmatch(value):
        return None
    return value.lower()


def _domain(value: str) -> str:
    fast = simple_domain(value)
    if fast is not None:
        return fast
    try:
        return normalise_domain(value)
    except AddressError as exc:
        raise ValueError(str(exc)) from exc


# The shape nearly every configured address has: a lower-risk ASCII dot-atom
# at an ASCII domain of LDH labels. For these, parse_address would return the
# text with the domain lower-cased; a property test holds the two equal.
_SIMPLE_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def simple_email(value: str) -> str | None:
    """The normal form of a plain ASCII address without parsing it, or None."""
    if len(value) > 254 or not _SIMPLE_EMAIL.fullmatch(value):
        return None
    local, _, domain = value.rpartition("@")
    if len(local) > 64:
        return None
    return f"{local}@{domain.lower()}"


def _email(value: str) -> str:
    fast = simple_email(value)
    if fast is not None:
        return fast
    try:
        return str(parse_address(value))
    except AddressError as exc:
        raise ValueError(f"{value!r} is not a mail address: {exc}") from exc


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _name(value: str) -> str:
    """Mailbox, postoffice, group and list names: safe as a directory name and a local part."""
    if not _NAME.match(value) or ".." in value:
        raise ValueError(
            "use letters, digits, '.', '_' or '-' (no '/', no '..'), starting with a letter or digit"
        )
    return value


_ONE_LINE_HINT = (
    "write it on one line; a YAML block scalar (| or >) ends with a line break, "
    "so use a quoted string or |- / >- instead"
)


def _control_character(value: str) -> tuple[int, str] | None:
    """The first character that must not reach a header or protocol line, and its name."""
    for i, ch in enumerate(value, 1):
        if ch == "\t":
            continue  # folding whitespace is allowed in unstructured header text
        if ch == "\r":
            return i, "a carriage return (CR)"
        if ch == "\n":
            return i, "a line feed (LF)"
        category = unicodedata.category(ch)
        if category == "Cc" or category in ("Zl", "Zp"):
            return i, f"the control character U+{ord(ch):04X}"
    return None


def _header_text(value: str) -> str:
    """Text that ends up in a message header or a protocol line: one line, no controls.

    RFC 5322 §2.2: a header field body holds no CR or LF; anything that would
    be flattened or, worse, start a new header at runtime is refused here.
    """
    found = _control_character(value)
    if found is not None:
        pos, what = found
        hint = _ONE_LINE_HINT if "(" in what else "remove it; it is invisible in most editors"
        raise PydanticCustomError(
            "header_text",
            "contains {what} at character {pos}; it goes into a mail header or an SMTP "
            "reply, which must be one line",
            {"what": what, "pos": pos, "hint": hint},
        )
    return value


_FIELD_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 §3.6.8: ftext is %d33-57 / %d59-126


def _header_name(value: str) -> str:
    """A header field name such as X-Original-To."""
    if not _FIELD_NAME.match(value):
        raise PydanticCustomError(
            "header_name",
            "{value} is not a header field name: printable ASCII only, no spaces, "
            "no ':' (RFC 5322 §3.6.8)",
            {"value": repr(value), "hint": "for example X-Original-To"},
        )
    return value


def _host_name(value: str) -> str:
    """A host name for the greeting, EHLO and Received: a domain name, kept as written."""
    _header_text(value)
    try:
        normalise_domain(value)
    except AddressError as exc:
        raise PydanticCustomError(
            "host_name",
            "{value} is not a host name: {why}",
            {"value": repr(value), "why": str(exc), "hint": "for example mail.example.com"},
        ) from exc
    return value


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address") from exc
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]
HeaderText = Annotated[str, AfterValidator(_header_text)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
HostName = Annotated[str, AfterValidator(_host_name)]
IpAddress = Annotated[str, AfterValidator(_ip_address)]
IpPattern = Annotated[str, AfterValidator(_ip_pattern)]
DomainName = Annotated[str, AfterValidator(_domain)]
EmailAddress = Annotated[str, AfterValidator(_email)]
Name = Annotated[str, AfterValidator(_name)]
