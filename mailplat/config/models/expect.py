"""Routing assertions: `sites/<site>/expect.yaml`.

Cases pin where an address must land and which relay decisions a sender must
get. validate, plan and apply run them and refuse a change that breaks one.
"""

from __future__ import annotations

from pydantic import Field

from mailplat.config.models.base import Model


class RouteCase(Model):
    """An address and every destination it must reach, e.g. `mailbox:example/alice`."""

    address: str = Field(description="The recipient address to route.")
    lands: list[str] | str = Field(
        description="Destinations: mailbox:PO/NAME, list:ADDRESS, remote:ADDRESS, or reject."
    )

    @property
    def destinations(self) -> list[str]:
        return [self.lands] if isinstance(self.lands, str) else list(self.lands)


class RelayCase(Model):
    """A sender, client and optional login, and whether relaying to `to` must be allowed."""

    sender: str = Field(alias="from", description="MAIL FROM address.")
    to: str = Field(description="Recipient address.")
    ip: str = Field("203.0.113.1", description="Client IP (default: an outside address).")
    login: str | None = Field(None, description="Authenticated login, if any.")
    allowed: bool = Field(description="Whether relaying must be allowed.")


class Expectations(Model):
    """All routing assertions of a site."""

    routes: list[RouteCase] = Field(default_factory=list)
    relay: list[RelayCase] = Field(default_factory=list)
