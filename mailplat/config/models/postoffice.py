"""One postoffice: `sites/<site>/postoffices/<name>.yaml`.

A postoffice owns domains, mailboxes, groups and lists. Collections are maps
keyed by name, so a name is unique by construction and a diff reads well.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mailplat.config.models.base import (
    DomainName,
    EmailAddress,
    HeaderText,
    HostPort,
    Model,
    Name,
)

Quota = int | Literal["unlimited"]

# Hash formats we accept (Dovecot-style {SCHEME} prefixes are allowed too).
HASH_PREFIXES = ("$argon2id$", "$argon2i$", "$2a$", "$2b$", "$2y$", "$6$")


def strip_scheme(value: str) -> str:
    """Drop a Dovecot `{SCHEME}` prefix, keeping the crypt string."""
    if value.startswith("{") and "}" in value:
        return value.split("}", 1)[1]
    return value


class Domain(Model):
    """A mail domain of this postoffice."""

    disabled: bool = Field(False, description="Refuse mail for this domain (550).")
    abuse: str | None = Field(None, description="Where abuse@ goes: a mailbox name or an address.")
    postmaster: str | None = Field(
        None, description="Where postmaster@ goes: a mailbox name or an address."
    )
    catchall: str | None = Field(
        None, description="Where mail for unknown addresses goes: a mailbox name or an address."
    )
    smart_host: HostPort | None = Field(
        None, description="Forward all of this domain's mail to host[:port] (backup MX)."
    )
    sender_blacklist: list[DomainName] = Field(
        default_factory=list, description="Sender domains refused for this domain."
    )


class Redirect(Model):
    """Forward a mailbox's mail."""

    to: list[EmailAddress] = Field(min_length=1, description="Addresses to forward to.")
    keep_copy: bool = Field(False, description="Also keep a copy in this mailbox.")


class Autoresponder(Model):
    """Reply automatically (never to bulk mail, lists or null senders)."""

    enabled: bool = Field(True, description="Send the reply.")
    subject: HeaderText = Field("Out of office", description="Subject of the reply.")
    body: str = Field(description="Text of the reply.")


class DeliveryEvent(Model):
    """Run a program after each delivery: `program postoffice mailbox messagefile`."""

    program: str = Field(description="Program to run; arguments are appended.")


class Mailbox(Model):
    """A mailbox: a Maildir plus login, addresses and delivery options."""

    password: str | None = Field(
        None,
        description="Password hash: argon2id, bcrypt or SHA512-crypt (make one: mailplat passwd).",
    )
    type: Literal["user", "admin"] = Field(
        "user", description="admin may manage the postoffice; user reads mail."
    )
    quota_mb: Quota | None = Field(
        None, description="Size limit in MB, or unlimited; default: the postoffice's."
    )
    disabled: bool = Field(False, description="Refuse mail for this mailbox (550).")
    logon_disabled: bool = Field(False, description="Refuse POP3/SMTP logins.")
    addresses: list[EmailAddress] = Field(
        default_factory=list, description="Extra addresses, on domains of this postoffice."
    )
    reply_to: EmailAddress | None = Field(
        None, description="Reply-To address used for this mailbox's autoresponder."
    )
    redirect: Redirect | None = None
    autoresponder: Autoresponder | None = None
    delivery_event: DeliveryEvent | None = None

    @field_validator("password")
    @classmethod
    def _hashed(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not strip_scheme(value).startswith(HASH_PREFIXES):
            raise ValueError(
                "plain-text passwords are refused; run `mailplat passwd` and paste the hash"
            )
        return value


class Group(Model):
    """One address that expands to many."""

    display_name: HeaderText | None = Field(None, description="Name shown for the group.")
    address: EmailAddress = Field(description="The group's address, on a domain of the postoffice.")
    members: list[EmailAddress] = Field(
        default_factory=list, description="Addresses the group expands to (local or remote)."
    )


class MailingList(Model):
    """A list server address."""

    domain: DomainName = Field(description="Domain of the list; its address is <name>@<domain>.")
    owner: str = Field(description="Owner/moderator: a mailbox name or an address.")
    disabled: bool = Field(False, description="Refuse posts and commands.")
    help_enabled: bool = Field(True, description="Answer `help` by subject.")
    send_from: Literal["list", "moderator"] = Field(
        "list", description="From address of list mail: the list's or the moderator's."
    )
    type: Literal["open", "moderated"] = Field(
        "open", description="moderated: the owner approves every post."
    )
    subscriptions: Literal["anyone", "not_by_email", "confirmed"] = Field(
        "confirmed",
        description="anyone: subscribe by mail; not_by_email: only in YAML; "
        "confirmed: by mail with a confirmation code.",
    )
    posting: Literal["anyone", "subscribers", "password"] = Field(
        "subscribers", description="Who may post; password: [:pw:] in the subject."
    )
    password: str | None = Field(None, description="Hash of the posting password ([:pw:]).")
    reply_to: Literal["list", "poster", "moderator"] = Field(
        "list", description="Where replies to list mail go."
    )
    # One type rather than Literal | str: the special words are just texts,
    # and one type gives one clear error for a prefix with a line break.
    subject_prefix: HeaderText = Field(
        "list_name", description="list_name, none, or a custom text."
    )
    header: str | None = Field(None, description="Text added above every post.")
    footer: str | None = Field(None, description="Text added below every post.")
    members: list[EmailAddress] = Field(
        default_factory=list, description="Declared members (runtime subscribers add to them)."
    )


class Welcome(Model):
    """Message placed in every new mailbox."""

    subject: HeaderText = Field("Welcome", description="Subject of the welcome message.")
    body: str = Field(description="Text of the welcome message.")


class Postoffice(Model):
    """A customer account: domains, mailboxes, groups and lists."""

    name: Name | None = Field(None, description="Defaults to the file name; must match it.")
    domains: dict[DomainName, Domain] = Field(
        default_factory=dict, description="Domains by name (at least one)."
    )
    default_quota_mb: Quota = Field("unlimited", description="Quota for mailboxes that set none.")
    auto_address: bool = Field(
        True, description="Give every mailbox <name>@ each domain of the postoffice."
    )
    welcome: Welcome | None = None
    mailboxes: dict[Name, Mailbox] = Field(default_factory=dict)
    groups: dict[Name, Group] = Field(default_factory=dict)
    lists: dict[Name, MailingList] = Field(default_factory=dict)
