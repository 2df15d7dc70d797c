"""Which server a remote recipient's mail goes to: its domain's MX, or a smart host.

Pure: (Directory, recipient) -> Destination. Rules, in order:
- a local domain forwarded to its own smart host (backup MX) goes there when
  no global smart host is set, or when domain_smart_host_priority is on;
- otherwise the global smart host, when set, takes every remote message;
- otherwise the recipient's domain, through DNS (MX, or the literal's IP).
Smart hosts default to port 25 (the model's documented default); MX delivery
uses delivery.remote_port. Recipients with the same Destination.key share
connections and the per-destination connection limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplat.config.directory import Directory
from mailplat.config.models.base import split_host_port
from mailplat.config.models.site import SmartHostAuth

SMART_HOST_PORT = 25


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one group of recipients is sent."""

    key: str  # "mx:<domain>" or "relay:<host>:<port>"
    domain: str  # for MX delivery: the recipient domain; for a relay: its host
    port: int
    relay: bool = False
    auth: SmartHostAuth | None = None

    @property
    def label(self) -> str:
        return self.key.split(":", 1)[1]


def domain_of(rcpt: str) -> str:
    """The domain of a routed recipient (the part after the last @, as the parser split it)."""
    return rcpt.rsplit("@", 1)[-1].lower()


def _relay(spec: str, auth: SmartHostAuth | None) -> Destination:
    host, port = split_host_port(spec, SMART_HOST_PORT)
    assert port is not None
    host = host.lower()
    shown = f"[{host}]" if ":" in host else host
    return Destination(f"relay:{shown}:{port}", host, port, relay=True, auth=auth)


def destination_for(directory: Directory, rcpt: str) -> Destination:
    """The Destination of one remote recipient under the current config."""
    delivery = directory.site.delivery
    domain = domain_of(rcpt)
    entry = directory.domains.get(domain)
    own = entry.smart_host if entry is not None else None
    glob = delivery.smart_host
    if own and (glob is None or delivery.domain_smart_host_priority):
        return _relay(own, None)
    if glob is not None:
        return _relay(glob.host, glob.auth)
    return Destination(f"mx:{domain}", domain, delivery.remote_port)
