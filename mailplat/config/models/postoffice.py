"""One postoffice: `sites/<site>/postoffices/<name>.yaml`.

A postoffice owns domains, mailboxes, groups and lists. Collections are maps
keyed by name, so a name is unique by construction and a diff reads well.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

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


_SELECTOR = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _selector(value: str) -> str:
    """RFC 6376 §3.1: a selector is one or more DNS labels."""
    if not _SELECTOR.match(value):
        raise ValueError(
            f"{value!r} is not a DKIM selector: DNS labels of letters, digits and '-', "
            "joined by '.' (for example rsa1 or 2024-05)"
        )
    return value


Selector = Annotated[str, AfterValidator(_selector)]
DkimAlgorithm = Literal["rsa-sha256", "ed25519"]


class DkimKey(Model):
    """One DKIM key: its selector (the DNS name it is published under) and its private key."""

    selector: Selector = Field(
        description="Published as <selector>._domainkey.<domain> (TXT); `mailplat dns` prints it."
    )
    algorithm: DkimAlgorithm = Field(
        "rsa-sha256", description="rsa-sha256 (2048-bit key) or ed25519 (RFC 8463)."
    )
    key_file: str | None = Field(
        None,
        description="PEM private key on this host, never in git (relative to the site folder "
        "or absolute); default dkim/<domain>.<selector>.pem. `mailplat dkim keygen` makes it.",
    )
    sign: bool = Field(
        True,
        description="Sign with this key. Rotation: declare the new selector with sign: false, "
        "publish its record, wait for DNS, then switch sign on it and off on the old one.",
    )


def _default_dkim_keys() -> list[DkimKey]:
    # mox's choice: an RSA signature every verifier knows, and an Ed25519 one
    # for those that prefer it (RFC 8463 dual signing).
    return [DkimKey(selector="rsa1"), DkimKey(selector="ed1", algorithm="ed25519")]


class Dkim(Model):
    """DKIM signing of this domain's outbound mail (RFC 6376)."""

    keys: list[DkimKey] = Field(
        default_factory=_default_dkim_keys,
        min_length=1,
        description="Keys by selector; every key with sign: true signs each message. "
        "Default: rsa1 (rsa-sha256) and ed1 (ed25519).",
    )

    @model_validator(mode="after")
    def _unique(self) -> Dkim:
        names = [k.selector.lower() for k in self.keys]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"selector {twice[0]!r} is declared twice; each key needs its own")
        return self


class DmarcRecord(Model):
    """The DMARC record this domain publishes (`mailplat dns` prints and checks it)."""

    policy: Literal["none", "quarantine", "reject"] = Field(
        "none",
        description="p=: start with none, read the reports, then quarantine, then reject.",
    )
    rua: EmailAddress | None = Field(
        None, description="Where aggregate reports go (rua=mailto:), e.g. dmarc@<domain>."
    )


class InboundOverride(Model):
    """This domain's own choices over the site's `authentication` decisions (unset: the site's)."""

    spf_fail: Literal["mark", "reject"] | None = Field(
        None, description="SPF fail: mark it in Authentication-Results, or reject at RCPT."
    )
    dmarc_reject: Literal["reject", "quarantine"] | None = Field(
        None, description="A sender's p=reject: refuse (550 5.7.1), or treat as quarantine."
    )
    dmarc_quarantine: Literal["junk", "tag", "both"] | None = Field(
        None, description="p=quarantine: into the Junk folder, tag the subject, or both."
    )


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
    dkim: Dkim | None = Field(
        None,
        description="Sign this domain's outbound mail; `dkim: {}` uses the defaults "
        "(rsa1 + ed1). Keys: `mailplat dkim keygen`.",
    )
    dmarc: DmarcRecord = Field(
        default_factory=DmarcRecord, description="The DMARC record to publish for this domain."
    )
    authentication: InboundOverride | None = Field(
        None, description="Override the site's inbound SPF/DMARC decisions for mail to this domain."
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
