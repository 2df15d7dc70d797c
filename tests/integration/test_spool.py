"""The spool on a real filesystem: receive, route, consume, recover, group commit.

Recovery rows come from recover.py's state table; each test builds the disk
state a crash would leave and checks what open() makes of it.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

from mailplat.core.envelope import Envelope
from mailplat.core.ids import is_id, new_id
from mailplat.spool.queue import Spool
from mailplat.spool.record import encode

ENV = Envelope("sender@remote.test", ("a@example.test", "b@other.test"), new_id(), 1000.0)
BODY = b"Subject: hi\n\nbody\n"


def opened(root: Path) -> Spool:
    spool = Spool(root)
    spool.open()
    return spool


async def test_receive_route_done_leaves_nothing(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    msg_id = await spool.receive(ENV, BODY)
    assert msg_id == ENV.trace_id  # one id: the trace id is the message id
    assert spool.incoming() == [msg_id]
    assert spool.read_incoming(msg_id) == (ENV, BODY)
    await spool.route(
        msg_id,
        [
            ("postoffice", ENV.with_rcpts(("example/a",))),
            ("smtp", ENV.with_rcpts(("b@other.test",))),
        ],
    )
    assert spool.incoming() == []
    assert spool.stats()["postoffice"] == 1 and spool.stats()["smtp"] == 1
    (rid,) = spool.due("postoffice", 2000.0, 10)
    assert spool.claim("postoffice", rid)
    assert not spool.claim("postoffice", rid)  # one worker at a time
    env, mid = spool.read_record("postoffice", rid)
    assert env.rcpts == ("example/a",) and mid == msg_id
    assert spool.read_message(mid) == BODY
    await spool.done("postoffice", rid)
    spool.release("postoffice", rid)
    assert (tmp_path / "msg" / msg_id).exists()  # the smtp record still needs it
    (rid2,) = spool.due("smtp", 2000.0, 10)
    await spool.done("smtp", rid2)
    assert not (tmp_path / "msg" / msg_id).exists()
    assert all(not os.listdir(tmp_path / d) for d in ("tmp", "incoming", "msg"))


async def test_route_with_no_records_removes_the_message(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    msg_id = await spool.receive(ENV, BODY)
    await spool.route(msg_id, [])
    assert not (tmp_path / "incoming" / msg_id).exists()
    assert spool.stats()["incoming"] == 0


async def test_update_move_and_due_order(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    ids = []
    for n in range(3):
        msg_id = await spool.receive(ENV, BODY)
        await spool.route(msg_id, [("smtp", ENV)])
        ids.append(f"{msg_id}.0")
    later = Envelope(
        ENV.mail_from, ENV.rcpts, ENV.trace_id, ENV.received_at, attempts=1, next_try=5000.0
    )
    await spool.update("smtp", ids[0], later)
    assert spool.due("smtp", 2000.0, 10) == ids[1:]
    assert spool.due("smtp", 6000.0, 10)[-1] == ids[0]
    assert spool.next_due("smtp") == 0.0
    await spool.move("smtp", ids[1], "deferred")
    assert spool.records("deferred") == [ids[1]]
    assert spool.read_record("deferred", ids[1])[0] == ENV
    # All of it survives a restart.
    again = opened(tmp_path)
    assert sorted(again.records("smtp")) == sorted([ids[0], ids[2]])
    assert again.read_record("smtp", ids[0])[0].attempts == 1
    assert again.due("smtp", 2000.0, 10) == [ids[2]]
    assert again.records("deferred") == [ids[1]]


async def test_concurrent_directory_syncs_share_one_fsync(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    await asyncio.gather(*(spool.syncer.sync(tmp_path / "incoming") for _ in range(50)))
    assert spool.syncer.requests == 50
    assert spool.syncer.commits == 1


async def test_concurrent_receives_are_group_committed(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    ids = await asyncio.gather(*(spool.receive(ENV, BODY * n) for n in range(1, 101)))
    assert len(set(ids)) == 100
    assert spool.syncer.commits < spool.syncer.requests == 100
    reopened = opened(tmp_path)
    assert sorted(reopened.incoming()) == sorted(ids)


# -- recovery rows --------------------------------------------------------------


def test_recovery_removes_unfinished_writes(tmp_path: Path) -> None:
    opened(tmp_path)
    (tmp_path / "tmp" / "X").write_bytes(b"half a mess")
    report = Spool(tmp_path).open()
    assert report.tmp_removed == 1
    assert not os.listdir(tmp_path / "tmp")


async def test_recovery_reroutes_a_half_routed_message(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    msg_id = await spool.receive(ENV, BODY)
    # The crash came after the records were written but before the rename.
    qdir = tmp_path / "q" / "postoffice"
    qdir.mkdir(parents=True)
    (qdir / f"{msg_id}.0").write_bytes(encode(ENV, msg_id))
    again = Spool(tmp_path)
    report = again.open()
    assert report.half_routed == 1
    assert again.incoming() == [msg_id]
    assert again.records("postoffice") == []


async def test_recovery_removes_a_message_whose_records_are_done(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    msg_id = await spool.receive(ENV, BODY)
    await spool.route(msg_id, [("smtp", ENV)])
    (tmp_path / "q" / "smtp" / f"{msg_id}.0").unlink()  # done, but the msg unlink was lost
    report = Spool(tmp_path).open()
    assert report.orphans_removed == 1
    assert not (tmp_path / "msg" / msg_id).exists()


async def test_recovery_quarantines_damaged_files(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    bad_in = await spool.receive(ENV, BODY)
    routed = await spool.receive(ENV, BODY)
    await spool.route(routed, [("smtp", ENV), ("postoffice", ENV)])
    path = tmp_path / "incoming" / bad_in
    path.write_bytes(path.read_bytes()[:-3])
    (tmp_path / "q" / "smtp" / f"{routed}.0").write_bytes(b"garbage")
    again = Spool(tmp_path)
    report = again.open()
    assert report.quarantined == 2
    assert again.incoming() == []
    assert again.records("smtp") == []
    assert again.records("postoffice") == [f"{routed}.1"]
    assert again.stats()["quarantine"] == 2


async def test_recovery_quarantines_a_record_without_its_message(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    msg_id = await spool.receive(ENV, BODY)
    await spool.route(msg_id, [("smtp", ENV)])
    (tmp_path / "msg" / msg_id).unlink()
    report = Spool(tmp_path).open()
    assert report.quarantined == 1


async def test_records_found_after_a_crash_are_flagged_as_possible_duplicates(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    assert not spool.open().after_crash  # a fresh spool is not a crash
    msg_id = await spool.receive(ENV, BODY)
    await spool.route(msg_id, [("postoffice", ENV)])
    # No close(): the process died.
    crashed = Spool(tmp_path)
    assert crashed.open().after_crash
    assert crashed.possible_duplicate("postoffice", f"{msg_id}.0")
    crashed.close()
    clean = Spool(tmp_path)
    assert not clean.open().after_crash
    assert not clean.possible_duplicate("postoffice", f"{msg_id}.0")


async def test_a_taken_or_malformed_trace_id_gets_a_new_id_carried_by_the_envelope(
    tmp_path: Path,
) -> None:
    spool = opened(tmp_path)
    first = await spool.receive(ENV, BODY)
    # The same trace id again (a badmail resend while the original is queued),
    # twice at once: neither may overwrite the other.
    again, twice = await asyncio.gather(spool.receive(ENV, BODY), spool.receive(ENV, BODY))
    assert len({first, again, twice}) == 3
    for msg_id in (again, twice):
        assert spool.read_incoming(msg_id)[0] == replace(ENV, trace_id=msg_id)
    odd = await spool.receive(replace(ENV, trace_id="../x"), BODY)
    assert is_id(odd) and spool.read_incoming(odd)[0].trace_id == odd
    reopened = Spool(tmp_path)
    reopened.open()
    assert sorted(reopened.incoming()) == sorted([first, again, twice, odd])
