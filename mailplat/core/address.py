"""Parse and normalise mail addresses (RFC 5321 §4.1.2, RFC 6531 for UTF-8).

Input: the text of a path or an address as a client or a config file wrote it.
Output: an immutable Address whose `key` (lower-cased local part @ A-label
domain) is what routing and relay decisions compare. Relay and routing use the
same parsed value, so an address cannot look local to one and remote to the
other. Forms that classic open relays misread (percent hack, bang paths,
quoted local parts holding an @, source routes) are parsed literally: the part
after the last unquoted @ is the domain, always.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from mailplat.core.errors import AddressError

MAX_LOCAL = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2
MAX_PATH = 256  # RFC 5321 §4.5.3.1.3

_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address. `local` keeps its case; `domain` is a lower-case A-label or a literal."""

    local: str
    domain: str

    @property
    def key(self) -> str:
        """The comparison key: local part folded to lower case, domain as stored."""
        return f"{quote_local(self.local.lower())}@{self.domain}"

    @property
    def text(self) -> str:
        """The address as given (local part keeps its case): what a remote server receives."""
        return f"{quote_local(self.local)}@{self.domain}"

    @property
    def is_literal(self) -> bool:
        """True for a domain literal such as [192.0.2.1]."""
        return self.domain.startswith("[")

    @property
    def literal_ip(self) -> str | None:
        """The IP of a domain literal, or None."""
        if not self.is_literal:
            return None
        inner = self.domain[1:-1]
        return inner[5:] if inner.lower().startswith("ipv6:") else inner

    @property
    def has_route_chars(self) -> bool:
        """True when the local part carries %, ! or @: relay tricks from the past."""
        return any(c in self.local for c in "%!@")

    def __str__(self) -> str:
        return f"{quote_local(self.local)}@{self.domain}"


def quote_local(local: str) -> str:
    """The local part as written in a path: quoted (RFC 5321 §4.1.2) unless a dot-atom."""
    if all(part and _ATEXT.match(part) for part in local.split(".")):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check_chars(text: str) -> None:
    for ch in text:
        if ord(ch) < 32 or ord(ch) == 127:
            raise AddressError(f"control character {ord(ch):#04x} in address")


def normalise_domain(domain: str) -> str:
    """Lower-case, strip one trailing dot, IDNA-encode; raise AddressError if it is not a domain."""
    _check_chars(domain)
    if domain.startswith("["):
        return _normalise_literal(domain)
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        raise AddressError("empty domain")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise AddressError(f"domain {domain!r} is not a valid IDNA name") from exc
    if len(ascii_domain) > MAX_DOMAIN:
        raise AddressError("domain longer than 255 octets")
    labels = ascii_domain.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise AddressError(f"domain {domain!r} has an invalid label {label!r}")
    return ascii_domain


def _normalise_literal(domain: str) -> str:
    if not domain.endswith("]"):
        raise AddressError("unterminated domain literal")
    inner = domain[1:-1]
    try:
        if inner.lower().startswith("ipv6:"):
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError as exc:
        raise AddressError(f"invalid address literal {domain!r}") from exc


def _split(text: str) -> tuple[str, str]:
    """Split at the last @ that is not inside a quoted string."""
    in_quote = False
    escaped = False
    at = -1
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and in_quote:
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch == "@" and not in_quote:
            at = i
    if in_quote:
        raise AddressError("unterminated quoted string")
    if at <= 0:
        raise AddressError("address needs a local part and a domain")
    return text[:at], text[at + 1 :]


def _normalise_local(local: str) -> str:
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        inner = re.sub(r"\\(.)", r"\1", local[1:-1])
        if not inner:
            raise AddressError("empty quoted local part")
        # Unquoted here; quote_local puts quotes back where a dot-atom cannot hold it.
        return inner
    parts = local.split(".")
    if any(not p or not _ATEXT.match(p) for p in parts):
        raise AddressError(f"local part {local!r} is not a dot-atom; quote it or fix it")
    return local


def strip_source_route(path: str) -> str:
    """Drop an RFC 5321 §4.1.2 source route (`@a,@b:user@c` -> `user@c`); it must be ignored."""
    if path.startswith("@") and ":" in path:
        return path.split(":", 1)[1]
    return path


# Pure and hot: every reload parses each of a site's addresses again in the
# models, validation and the Directory. Errors are never cached (lru_cache
# does not keep exceptions), so a bad address is reported every time.
@functools.lru_cache(maxsize=1 << 19)
def parse_address(text: str) -> Address:
    """Parse `local@domain` (angle brackets and a source route allowed); raise AddressError."""
    _check_chars(text)
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    text = strip_source_route(text)
    if len(text.encode("utf-8")) > MAX_PATH:
        raise AddressError("address longer than 256 octets")
    local_raw, domain_raw = _split(text)
    local = _normalise_local(local_raw)
    if len(local.encode("utf-8")) > MAX_LOCAL:
        raise AddressError("local part longer than 64 octets")
    return Address(local=local, domain=normalise_domain(domain_raw))


def try_parse(text: str) -> Address | None:
    """parse_address, or None when the text is not an address."""
    try:
        return parse_address(text)
    except AddressError:
        return None
