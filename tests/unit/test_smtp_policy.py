"""Inbound RCPT policy, pure: every verdict of issue #3 without a socket."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from mailplat.auth.relay import Client
from mailplat.config.directory import Directory
from mailplat.config.load import load_site
from mailplat.connectors.smtp_in.policy import check_rcpt, check_sender
from mailplat.core import replies
from mailplat.core.address import parse_address
from tests.support import base_postoffice, write_site


def make(site: dict | None = None, tweak=None) -> Directory:  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp())
    po = base_postoffice()
    if tweak:
        tweak(po)
    return Directory(load_site(write_site(root, site=site, postoffices={"example": po}, tls=False)))


def verdict(
    d: Directory,
    rcpt: str,
    ip: str = "198.51.100.7",
    login: str | None = None,
    sender: str | None = "x@remote.test",
    full: bool = False,
    pop: bool = False,
) -> str | None:
    client = Client(
        ip=ip, login=login, sender=parse_address(sender) if sender else None, pop_before_smtp=pop
    )
    return check_rcpt(d, client, parse_address(rcpt), lambda key: 0 if full else None).reply


def test_local_mailbox_accepted() -> None:
    assert verdict(make(), "alice@example.test") is None


def test_unknown_user() -> None:
    assert verdict(make(), "nobody@example.test") == replies.S550_NO_SUCH_USER


def test_catchall_accepts_unless_disabled() -> None:
    def catchall(po: dict) -> None:  # type: ignore[type-arg]
        po["domains"]["example.test"]["catchall"] = "alice"

    assert verdict(make(tweak=catchall), "nobody@example.test") is None
    off = make({"security": {"disable_catchalls": True}}, catchall)
    assert verdict(off, "nobody@example.test") == replies.S550_NO_SUCH_USER


def test_disabled_domain_and_mailbox() -> None:
    def disable(po: dict) -> None:  # type: ignore[type-arg]
        po["domains"]["example.org"]["disabled"] = True
        po["mailboxes"]["bob"]["disabled"] = True

    d = make(tweak=disable)
    assert verdict(d, "alice@example.org") == replies.S550_DOMAIN_DISABLED
    assert verdict(d, "bob@example.test") == replies.S550_MAILBOX_DISABLED


def test_blocked_recipient() -> None:
    d = make({"smtp": {"blocked_recipients": ["alice@example.test"]}})
    assert verdict(d, "ALICE@example.test") == replies.S550_BLOCKED_ADDRESS


def test_sender_blacklist() -> None:
    def black(po: dict) -> None:  # type: ignore[type-arg]
        po["domains"]["example.test"]["sender_blacklist"] = ["spam.test"]

    d = make(tweak=black)
    assert verdict(d, "alice@example.test", sender="a@spam.test") == replies.S550_SENDER_BLACKLISTED
    assert verdict(d, "alice@example.test", sender="a@ok.test") is None


def test_quota_full_is_temporary() -> None:
    assert verdict(make(), "alice@example.test", full=True) == replies.S452_MAILBOX_FULL


@pytest.mark.parametrize(
    ("site", "kwargs", "allowed"),
    [
        ({}, {}, False),
        ({}, {"login": "example/alice"}, True),
        ({"relay": {"allow_authenticated": False}}, {"login": "example/alice"}, False),
        ({"relay": {"privileged_ips": ["198.51.100.0/24"]}}, {}, True),
        ({"relay": {"privileged_ips": ["198.51.*.*"]}}, {}, True),
        ({"relay": {"privileged_ips": ["10.0.0.0/8"]}}, {}, False),
        ({"relay": {"allow_local_senders": True}}, {"sender": "alice@example.test"}, True),
        ({"relay": {"allow_local_senders": False}}, {"sender": "alice@example.test"}, False),
        ({"relay": {"pop_before_smtp": {"enabled": True}}}, {"pop": True}, True),
        ({"relay": {"pop_before_smtp": {"enabled": False}}}, {"pop": True}, False),
        ({"relay": {"enabled": False}}, {"login": "example/alice"}, False),
    ],
)
def test_relay_matrix(site: dict, kwargs: dict, allowed: bool) -> None:  # type: ignore[type-arg]
    reply = verdict(make(site), "friend@remote.test", **kwargs)
    assert (reply is None) is allowed
    if not allowed:
        assert reply == replies.S550_RELAY_DENIED


@pytest.mark.parametrize(
    "rcpt",
    [
        "victim%remote.test@example.test",
        "remote.test!victim@example.test",
        '"victim@remote.test"@example.test',
        "@example.test:victim@remote.test",
    ],
)
def test_relay_tricks_never_relay(rcpt: str) -> None:
    # Parsed once; the domain after the last unquoted @ decides. Local forms are unknown users.
    reply = verdict(make(), rcpt)
    assert reply in (replies.S550_NO_SUCH_USER, replies.S550_RELAY_DENIED)


def test_authenticated_sender_must_match() -> None:
    d = make()
    assert check_sender(d, parse_address("alice.smith@example.test"), "example/alice") is None
    assert (
        check_sender(d, parse_address("bob@example.test"), "example/alice")
        == replies.S550_SENDER_NOT_OWNED
    )
    assert check_sender(d, None, "example/alice") is None
