"""The MTA router: every recipient lands in exactly one queue, loop-safe, no duplicates."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailplat.config.directory import Directory
from mailplat.config.load import load_site
from mailplat.core.envelope import Envelope
from mailplat.mta.router import BADMAIL, route
from tests.support import base_postoffice, write_site

_DIRS: dict[str, Directory] = {}


def directory(tmp_path_factory: object = None) -> Directory:
    if "d" not in _DIRS:
        import tempfile

        root = Path(tempfile.mkdtemp())
        po = base_postoffice()
        po["domains"]["example.test"]["catchall"] = "postmaster"
        po["mailboxes"]["carol"] = {
            "redirect": {"to": ["friend@remote.test", "bob@example.test"], "keep_copy": True}
        }
        po["groups"]["all"] = {
            "address": "all@example.test",
            "members": ["sales@example.test", "alice@example.test", "carol@example.test"],
        }
        site = write_site(root, postoffices={"example": po}, tls=False)
        _DIRS["d"] = Directory(load_site(site))
    return _DIRS["d"]


def env(*rcpts: str, sender: str = "x@remote.test") -> Envelope:
    return Envelope(mail_from=sender, rcpts=rcpts, trace_id="T", received_at=0.0)


def queues(rcpts: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {q: e.rcpts for q, e in route(env(*rcpts), directory()).records}


def test_mailbox_goes_to_postoffice_queue() -> None:
    assert queues(("alice@example.test",)) == {"postoffice": ("example/alice",)}


def test_group_nested_and_deduplicated() -> None:
    out = queues(("all@example.test", "alice@example.test"))
    assert sorted(out["postoffice"]) == ["example/alice", "example/bob", "example/carol"]
    assert out["smtp"] == ("friend@remote.test",)


def test_remote_goes_to_smtp_queue() -> None:
    assert queues(("x@remote.test",)) == {"smtp": ("x@remote.test",)}


def test_catchall_records_original_recipient() -> None:
    routing = route(env("nobody@example.test"), directory())
    ((queue, record),) = routing.records
    assert queue == "postoffice"
    assert record.rcpts == ("example/postmaster",)
    assert record.get("catchall:example/postmaster") == "nobody@example.test"


def test_unknown_on_domain_without_catchall_is_rejected() -> None:
    routing = route(env("nobody@example.org"), directory())
    assert routing.records == []
    assert [d.target for d in routing.rejected] == ["nobody@example.org"]


ADDRESSES = st.sampled_from(
    [
        "alice@example.test",
        "bob@example.test",
        "sales@example.test",
        "all@example.test",
        "carol@example.test",
        "nobody@example.test",
        "nobody@example.org",
        "x@remote.test",
        "Alice@EXAMPLE.TEST",
        "postmaster@example.org",
        "abuse@example.test",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(ADDRESSES, min_size=1, max_size=8))
def test_every_recipient_lands_somewhere_exactly_once(rcpts: list[str]) -> None:
    routing = route(env(*rcpts), directory())
    seen: list[str] = []
    for queue, record in routing.records:
        assert queue in ("postoffice", "smtp", "list", BADMAIL)
        seen += [f"{queue}:{r}" for r in record.rcpts]
    assert len(seen) == len(set(seen)), "a destination got two copies"
    assert routing.records or routing.rejected, "a message vanished"


def test_remote_local_parts_keep_their_case() -> None:
    # Only the remote host may fold the case of its own local parts (RFC 5321 §2.4).
    routing = route(env("John.Doe@Remote.TEST"), directory())
    [(queue, record)] = routing.records
    assert queue == "smtp"
    assert record.rcpts == ("John.Doe@remote.test",)
