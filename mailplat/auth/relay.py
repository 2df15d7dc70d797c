"""The relay decision, pure: may this client send to this recipient?

Input: the Directory, the client (IP, authenticated mailbox, sender address,
whether its IP logged in by POP3 recently) and one parsed recipient. Output:
a Verdict. The recipient is the same parsed Address routing uses, so a
percent hack, bang path, quoted local part or source route cannot look local
here and remote to the router (RELIABILITY.md guarantee 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplat.config.directory import Directory
from mailplat.core.address import Address
from mailplat.core.netmatch import ip_matches


@dataclass(frozen=True, slots=True)
class Client:
    """What the relay decision knows about the sending client."""

    ip: str
    login: str | None = None  # mailbox key when authenticated
    sender: Address | None = None
    pop_before_smtp: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str
    relaying: bool  # False when the recipient is local (no relay question at all)


def decide(directory: Directory, client: Client, rcpt: Address) -> Verdict:
    """Whether mail from `client` to `rcpt` may be accepted as far as relaying goes."""
    if directory.is_local_domain(rcpt.domain):
        return Verdict(True, f"{rcpt.domain} is a local domain", relaying=False)
    relay = directory.site.relay
    if not relay.enabled:
        return Verdict(False, "relaying is disabled on this server", relaying=True)
    if client.login and relay.allow_authenticated:
        return Verdict(True, f"authenticated as {client.login}", relaying=True)
    if ip_matches(client.ip, relay.privileged_ips):
        return Verdict(True, f"client {client.ip} is in privileged_ips", relaying=True)
    if relay.pop_before_smtp.enabled and client.pop_before_smtp:
        return Verdict(True, f"client {client.ip} logged in by POP3 recently", relaying=True)
    if (
        relay.allow_local_senders
        and client.sender is not None
        and directory.is_local_domain(client.sender.domain)
    ):
        return Verdict(True, "sender address is local (allow_local_senders)", relaying=True)
    return Verdict(False, f"{rcpt.domain} is not local and the client may not relay", True)
