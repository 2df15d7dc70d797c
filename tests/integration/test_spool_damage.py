"""Damage found by local delivery and by recovery: quarantined once, the sender told.

The spool is filled as the MTA would leave it (a postoffice record; an
incoming message not yet routed), closed, damaged on disk (a flipped bit in
each message's text in the journal), and a real server is started on it:
each damaged message is set aside once, never retried, and its sender
(alice, a local mailbox) gets a notice over the real delivery path.
"""

from __future__ import annotations

import time
from pathlib import Path

from mailplat.core.envelope import Envelope
from mailplat.core.ids import new_id
from mailplat.spool.queue import Spool
from tests.support import maildir_files, running, wait_for, write_site
from tests.support_spool import damage_body

BODY = b"Subject: precious\r\n\r\nthe words\r\n"


def _env(rcpts: tuple[str, ...]) -> Envelope:
    return Envelope(
        "alice@example.test",
        rcpts,
        new_id(),
        time.time(),
        meta=(("orig:example/bob", "bob@example.test"),),
    )


def _notices(data: Path) -> list[bytes]:
    return [
        f.read_bytes()
        for f in maildir_files(data, "example", "alice")
        if b"multipart/report" in f.read_bytes()
    ]


async def test_local_delivery_and_recovery_quarantine_damaged_messages(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    data = tmp_path / "data"
    spool = Spool(data / "spool")
    spool.open()
    routed = await spool.receive(_env(("example/bob",)), BODY)
    await spool.route(routed, [("postoffice", _env(("example/bob",)))])
    unrouted = await spool.receive(_env(("bob@example.test",)), BODY)
    spool.close()
    damage_body(data / "spool", routed, b"the words")
    damage_body(data / "spool", unrouted, b"the words")

    async with running(site, data) as server:
        await wait_for(lambda: len(_notices(data)) == 2, timeout=20)
        await server.delivery.drain()
        stats = server.spool.stats()
        assert stats.get("postoffice", 0) == 0 and stats["incoming"] == 0
        entries = server.spool.quarantined()
        assert {e["id"] for e in entries} == {routed, unrouted}
        assert all(not e.get("notify") for e in entries)
        # bob never got the damaged text.
        assert maildir_files(data, "example", "bob") == []
    for notice in _notices(data):
        assert b"damaged in this server's storage" in notice
        assert b"Final-Recipient: rfc822; bob@example.test" in notice
        assert b"the words" not in notice  # the untrusted text is not sent back
    # A restart finds nothing left to tell or to deliver.
    async with running(site, data) as server:
        await server.agent.drain()
        await server.delivery.drain()
        assert len(_notices(data)) == 2
        assert server.spool.stats()["quarantine"] == 2
