"""Server-wide settings: `sites/<site>/site.yaml`.

Every setting the seed product (MailEnable Standard) let an admin click has a
home here, with the seed's default where it had one. Field descriptions are
the config reference: the README and the JSON Schema are generated from them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mailplat.config.models.base import (
    DomainName,
    EmailAddress,
    HeaderName,
    HeaderText,
    HostName,
    HostPort,
    IpAddress,
    IpPattern,
    Model,
    Name,
)


class MtaStsPublish(Model):
    """What `mailplat dns` tells you to publish for MTA-STS."""

    mode: Literal["testing", "enforce", "none"] = Field(
        "testing", description="testing first (senders report, still deliver), then enforce."
    )
    max_age_days: int = Field(7, ge=1, le=365, description="How long senders keep the policy.")


class Server(Model):
    """Identity of this mail server."""

    local_domain: DomainName = Field(
        "localhost", description="The server's own domain (%LOCALDOMAIN% in the banner)."
    )
    host_name: HostName = Field(
        "localhost", description="Host name used in the SMTP greeting, EHLO and Received headers."
    )
    dns_servers: list[HostPort] = Field(
        default_factory=list,
        description="DNS servers as host[:port]; empty means the system resolver.",
    )
    notification_sender: EmailAddress | None = Field(
        None,
        description="From address of bounces and notices; default postmaster@<local_domain>.",
    )
    default_postoffice: Name | None = Field(
        None, description="Postoffice used for a bare mailbox login (no @postoffice)."
    )
    data_root: str | None = Field(
        None,
        description="Where queues, Maildirs and state live (relative to the site folder). "
        "--data and MAILPLAT_DATA override it; default: the checkout's queues/<site>.",
    )
    user: HeaderText | None = Field(
        None,
        description="Unprivileged user the server runs as: started as root, it binds the "
        "listeners, hands the data root to this user and drops root. Needed to serve "
        "ports below 1024 as root.",
    )
    group: HeaderText | None = Field(
        None, description="Group to run as with `user`; default: the user's primary group."
    )
    mta_sts: MtaStsPublish | None = Field(
        None,
        description="The MTA-STS policy (RFC 8461) your domains publish; `mailplat dns` prints "
        "the TXT records and the policy file to serve at https://mta-sts.<domain>/.well-known/.",
    )


class TlsFiles(Model):
    """A certificate and its key, PEM files (paths relative to the site folder)."""

    cert: str = Field(description="PEM certificate chain.")
    key: str = Field(description="PEM private key.")


class Listener(Model):
    """One protocol endpoint."""

    enabled: bool = Field(True, description="Start this listener.")
    bind: list[HostPort] = Field(
        default_factory=list, description="Addresses to listen on, host:port (several allowed)."
    )
    alternate_port: int | None = Field(
        None, ge=1, le=65535, description="Also listen on this port on every bind host."
    )
    tls: TlsFiles | None = Field(None, description="Certificate for STARTTLS/STLS or implicit TLS.")
    auth_requires_tls: bool = Field(
        True, description="Refuse AUTH/logins until the connection is encrypted."
    )


def _listener(port: int, enabled: bool) -> Listener:
    return Listener(enabled=enabled, bind=[f"0.0.0.0:{port}"])


class Listeners(Model):
    """The protocol endpoints: SMTP, submission, SMTPS, POP3, POP3S."""

    smtp: Listener = Field(default_factory=lambda: _listener(25, True))
    submission: Listener = Field(
        default_factory=lambda: _listener(587, False),
        description="Mail submission (RFC 6409): STARTTLS, AUTH required for every message.",
    )
    smtps: Listener = Field(
        default_factory=lambda: _listener(465, False), description="Implicit TLS SMTP (RFC 8314)."
    )
    pop3: Listener = Field(default_factory=lambda: _listener(110, True))
    pop3s: Listener = Field(
        default_factory=lambda: _listener(995, False), description="Implicit TLS POP3."
    )


class AccessControl(Model):
    """Which client IPs may connect to SMTP."""

    mode: Literal["off", "allow", "deny"] = Field(
        "off", description="off: everyone; allow: only `addresses`; deny: all but `addresses`."
    )
    addresses: list[IpPattern] = Field(
        default_factory=list, description="IPs, CIDR ranges or wildcard patterns (10.0.*.*)."
    )


OptionalCommand = Literal["VRFY", "EXPN", "ETRN", "HELP"]


def _default_commands() -> list[OptionalCommand]:
    return ["HELP"]


class SmtpInbound(Model):
    """Inbound SMTP behaviour."""

    max_connections: int = Field(
        200,
        ge=1,
        description="Concurrent connections per SMTP listener kind (smtp, submission, smtps); "
        "more get 421.",
    )
    max_connections_per_ip: int = Field(
        20, ge=1, description="Concurrent connections from one client IP."
    )
    max_message_size_kb: int = Field(
        10240, ge=0, description="Advertised SIZE in KB; 0 means no limit."
    )
    enforce_max_message_size: bool = Field(
        True, description="Refuse (552) messages over max_message_size_kb."
    )
    access: AccessControl = Field(default_factory=AccessControl)
    banner: HeaderText | None = Field(
        None,
        description="Alternate welcome banner; %LOCALDOMAIN% and %TIME% are replaced.",
    )
    max_recipients: int = Field(100, ge=1, description="Recipients per message; more get 452.")
    allowed_commands: list[OptionalCommand] = Field(
        default_factory=_default_commands,
        description="Optional commands answered for real; others get 252/502.",
    )
    blocked_recipients: list[EmailAddress] = Field(
        default_factory=list, description="Recipient addresses always refused with 550."
    )
    idle_timeout_seconds: int = Field(
        300, ge=1, description="Close a session idle this long (421 4.4.2 first)."
    )
    data_timeout_seconds: int = Field(
        600, ge=1, description="Longest a client may take to send one message's data."
    )
    max_messages_per_connection: int = Field(
        10000,
        ge=1,
        description="Transactions (MAIL commands) one connection may start; more get 421.",
    )
    max_junk_commands: int = Field(
        100,
        ge=1,
        description="NOOP, RSET, VRFY, EXPN, HELP, ETRN, HELO and EHLO a connection may send "
        "between two accepted messages; more get 421.",
    )
    min_free_disk_mb: int = Field(
        100,
        ge=0,
        description="Refuse mail (452 4.3.1) when the spool's disk would have less free space.",
    )
    max_hops: int = Field(
        50, ge=1, description="Received/Delivered-To headers allowed before 554 (mail loop)."
    )


class PopBeforeSmtp(Model):
    """Let IPs that logged in by POP3 relay for a while."""

    enabled: bool = Field(False, description="Remember POP3 logins and let their IPs relay.")
    minutes: int = Field(30, ge=1, description="How long a POP3 login opens relaying.")


class Relay(Model):
    """Who may send through this server to remote domains."""

    enabled: bool = Field(True, description="Relay at all (for those allowed below).")
    allow_authenticated: bool = Field(True, description="Authenticated senders may relay.")
    privileged_ips: list[IpPattern] = Field(
        default_factory=list,
        description="Client IPs that may relay without AUTH (IPs, CIDR, wildcards).",
    )
    allow_local_senders: bool = Field(
        False,
        description="Anyone using a local From may relay. Dangerous: anybody can forge it.",
    )
    pop_before_smtp: PopBeforeSmtp = Field(default_factory=PopBeforeSmtp)


class DomainLiterals(Model):
    """Accept mail to user@[ip] for our own IPs."""

    enabled: bool = Field(False, description="Accept user@[ip] for the IPs we listen on.")
    extra_ips: list[IpAddress] = Field(
        default_factory=list, description="IPs besides the bound ones that count as ours."
    )


class Dnsbl(Model):
    """One DNS block list."""

    zone: DomainName = Field(description="DNS zone of the list, e.g. zen.spamhaus.org.")
    enabled: bool = Field(True, description="Query this list.")


class AutoBan(Model):
    """Ban an IP that reached the failure limit."""

    enabled: bool = Field(False, description="Ban IPs that reach security.max_failures.")
    minutes: int = Field(60, ge=1, description="How long a ban lasts.")


class LoginLimits(Model):
    """Failed logins over SMTP AUTH, POP3 and IMAP, counted across connections (always on)."""

    max_failures_per_ip: int = Field(
        10, ge=1, description="Failures from one client (an IPv6 /64 counts as one) in the window."
    )
    window_minutes: int = Field(15, ge=1, description="How far back failures are counted.")
    cooldown_minutes: int = Field(
        15, ge=1, description="A client past the limit is refused this long, even a right password."
    )
    account_slowdown_after: int = Field(
        5, ge=1, description="After this many failures on one account, each attempt on it waits."
    )
    account_max_delay_seconds: int = Field(
        30, ge=1, description="The longest wait (it doubles per failure); accounts never lock."
    )
    failed_login_delay_seconds: float = Field(
        1.0, ge=0, le=30, description="Every failed login takes this long, known user or not."
    )


class Security(Model):
    """Anti-abuse settings."""

    reject_invalid_sender_domain: bool = Field(
        False, description="Refuse MAIL FROM whose domain has no MX/A record."
    )
    auth_sender_must_match: bool = Field(
        True, description="Authenticated senders must use an address of their own mailbox."
    )
    hide_client_ip: bool = Field(
        False, description="Write 127.0.0.1 instead of the client IP in Received headers."
    )
    require_ptr: bool = Field(
        False, description="Unauthenticated clients need a reverse DNS (PTR) name."
    )
    disable_catchalls: bool = Field(False, description="Ignore every domain's catchall.")
    domain_literals: DomainLiterals = Field(default_factory=DomainLiterals)
    max_failures: int = Field(
        10, ge=1, description="Drop the connection after this many failed commands/recipients."
    )
    auto_ban: AutoBan = Field(default_factory=AutoBan)
    ip_whitelist: list[IpPattern] = Field(
        default_factory=list, description="Exempt from DNSBL, SPF, auto-ban and login throttling."
    )
    logins: LoginLimits = Field(default_factory=LoginLimits)
    dnsbl: list[Dnsbl] = Field(default_factory=list, description="DNS block lists.")


class Authentication(Model):
    """Inbound SPF, DKIM, DMARC and ARC on the smtp listener (not submission), and what they decide.

    Results go into one Authentication-Results header (RFC 8601). Clients in
    security.ip_whitelist and authenticated sessions are not checked. A
    postoffice domain can override the decisions (`authentication:` there).
    """

    verify: bool = Field(
        False,
        description="Check SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and ARC (RFC 8617) "
        "on mail from other servers. Turn on before going live.",
    )
    spf_fail: Literal["mark", "reject"] = Field(
        "mark",
        description="SPF fail (-all): mark it in Authentication-Results, or reject (550 5.7.23) "
        "at RCPT.",
    )
    dmarc_reject: Literal["reject", "quarantine"] = Field(
        "reject",
        description="A failing sender with p=reject: refuse (550 5.7.1), or treat as quarantine.",
    )
    dmarc_quarantine: Literal["junk", "tag", "both"] = Field(
        "junk",
        description="A failing sender with p=quarantine: into the mailbox's Junk folder "
        "(Maildir++ .Junk), tag the subject, or both.",
    )
    quarantine_tag: HeaderText = Field(
        "[SPAM]", description="Subject prefix for dmarc_quarantine: tag."
    )
    refuse_local_spoof: bool = Field(
        True,
        description="Refuse (550 5.7.1) mail from outside whose From is one of our domains and "
        "that neither SPF nor DKIM authenticates: the classic forgery of our own users. "
        "relay.privileged_ips are trusted to send it.",
    )
    trusted_arc_sealers: list[DomainName] = Field(
        default_factory=list,
        description="Forwarders (mailing lists) whose valid ARC seal (RFC 8617) overrides a "
        "DMARC failure their changes caused.",
    )
    min_rsa_bits: int = Field(
        1024, ge=512, le=4096, description="Smaller DKIM RSA keys count as no signature."
    )
    time_budget_seconds: float = Field(
        8.0,
        gt=0,
        le=60,
        description="Longest the checks of one message may wait for DNS; past it the client "
        "gets 451 (try again), never a false reject.",
    )


class SmartHostAuth(Model):
    """Credentials for the smart host; the password never sits in the YAML."""

    username: str = Field(description="Login name at the smart host.")
    password_env: str | None = Field(None, description="Environment variable holding it.")
    password_file: str | None = Field(None, description="File holding it (first line).")
    mechanism: Literal["LOGIN", "PLAIN"] = Field("PLAIN", description="SASL mechanism to use.")

    @model_validator(mode="after")
    def _one_source(self) -> SmartHostAuth:
        if (self.password_env is None) == (self.password_file is None):
            raise ValueError("set exactly one of password_env or password_file")
        return self


class SmartHost(Model):
    """Send all remote mail through another server."""

    host: HostPort = Field(description="host[:port], port 25 when omitted.")
    auth: SmartHostAuth | None = None


class DelayNotifications(Model):
    """Tell senders their mail is delayed."""

    mode: Literal["off", "first", "each"] = Field(
        "first", description="off: never; first: once per message; each: at every retry."
    )
    after_minutes: int = Field(240, ge=0, description="Only after the message is this old.")


class MtaSts(Model):
    """MTA-STS (RFC 8461) for outbound mail: follow the policies recipient domains publish."""

    enabled: bool = Field(
        False,
        description="Look up _mta-sts TXT records and fetch policies over HTTPS; an enforce "
        "policy then requires TLS with a valid certificate to a listed MX.",
    )
    ca_file: str | None = Field(
        None,
        description="PEM CA bundle to trust for policy fetches and MX certificates, besides "
        "the system's (relative to the site folder).",
    )
    fetch_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Longest a policy fetch may take."
    )


class Delivery(Model):
    """Delivery: local (into Maildirs) and outbound (the SMTP connector's sending side)."""

    hold: bool = Field(
        False,
        description="Keep every message in its queue and deliver nothing, local or remote "
        "(maintenance); mail is still accepted and routed. Set false to release it.",
    )
    concurrency: int = Field(10, ge=1, description="Simultaneous outbound connections.")
    per_destination: int = Field(3, ge=1, description="Simultaneous connections to one host.")
    remote_timeout_seconds: int = Field(
        300, ge=1, description="Give up on a silent remote server after this."
    )
    remote_port: int = Field(25, ge=1, le=65535, description="Port of remote MX servers.")
    queue_poll_seconds: int = Field(
        15, ge=1, description="How often deferred mail is checked for its next retry."
    )
    max_outbound_size_kb: int = Field(0, ge=0, description="0 means no limit.")
    bind_ip: IpAddress | None = Field(None, description="Source IP for outbound connections.")
    retry_minutes: list[int] = Field(
        default_factory=lambda: [15, 30, 60, 240],
        min_length=1,
        description="Delays before retry 1, 2, 3, then every later retry.",
    )
    lifetime_hours: int = Field(48, ge=1, description="Give up (NDR, badmail) after this.")
    max_retries: int = Field(
        20, ge=0, description="Give up (NDR, badmail) after this many attempts."
    )
    delay_notifications: DelayNotifications = Field(default_factory=DelayNotifications)
    no_ndr: bool = Field(False, description="Never send non-delivery reports.")
    smart_host: SmartHost | None = None
    domain_smart_host_priority: bool = Field(
        True, description="A domain's own smart host wins over the global one."
    )
    add_missing_headers: bool = Field(
        True, description="Add Message-ID/Date for authenticated senders who left them out."
    )
    catchall_header: HeaderName = Field(
        "X-Original-To", description="Header naming the original recipient of catchall mail."
    )
    mta_sts: MtaSts = Field(default_factory=MtaSts)
    dane: bool = Field(
        False,
        description="DANE (RFC 7672): when the resolver returns DNSSEC-validated TLSA records "
        "for an MX, require TLS with a certificate matching them. Needs a validating resolver "
        "in server.dns_servers.",
    )


class Logging(Model):
    """Log files."""

    w3c: bool = Field(True, description="W3C extended log of SMTP/POP3 sessions.")
    activity: bool = Field(True, description="Activity log: one line per message event.")
    debug: bool = Field(False, description="Debug log: every protocol line (verbose).")
    json_lines: bool = Field(True, alias="json", description="Structured JSON lines.")
    directory: str = Field("logs", description="Relative to the data root.")
    rollover: Literal["daily", "hourly", "never"] = Field(
        "daily", description="When to start a new log file."
    )


class Pop3Service(Model):
    """POP3 (and POP3S) sessions."""

    max_connections: int = Field(
        200, ge=1, description="Concurrent POP3 connections (both listeners); more get -ERR."
    )
    max_connections_per_ip: int = Field(
        20, ge=1, description="Concurrent POP3 connections from one client IP."
    )
    idle_timeout_seconds: int = Field(
        600,
        ge=60,
        description="Close a session idle this long, saying so (RFC 1939: at least 10 minutes).",
    )


class Site(Model):
    """A whole mail site: server settings; postoffices live in postoffices/*.yaml."""

    server: Server = Field(default_factory=Server)
    listeners: Listeners = Field(default_factory=Listeners)
    smtp: SmtpInbound = Field(default_factory=SmtpInbound)
    pop3: Pop3Service = Field(default_factory=Pop3Service)
    relay: Relay = Field(default_factory=Relay)
    security: Security = Field(default_factory=Security)
    delivery: Delivery = Field(default_factory=Delivery)
    authentication: Authentication = Field(default_factory=Authentication)
    logging: Logging = Field(default_factory=Logging)
