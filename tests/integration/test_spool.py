"""The spool on a real filesystem: receive, route, consume, recover, group commit, compact.

Recovery rows come from replay.py's state table; each test builds the disk
state a crash (or a failing disk) would leave and checks what open() makes of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from mailplat.core.envelope import Envelope
from mailplat.core.ids import is_id, new_id
from mailplat.spool import frames as fr
from mailplat.spool.queue import Damaged, Spool
from tests.support_spool import (
    accept_of,
    damage_accept_header,
    damage_body,
    drop_frames_after,
    frames_of,
    segments,
)

ENV = Envelope("sender@remote.test", ("a@example.test", "b@other.test"), new_id(), 1000.0)
BODY = b"Subject: hi\n\nbody\n"


def opened(root: Path, **kwargs: int) -> Spool:
    spool = Spool(root, **kwargs)
    spool.open()
    return spool


def env(**changes: object) -> Envelope:
    return replace(ENV, trace_id=new_id(), **changes)  # type: ignore[arg-type]


async def test_receive_route_done_leaves_nothing(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    e = env()
    msg_id = await spool.receive(e, BODY)
    assert msg_id == e.trace_id  # one id: the trace id is the message id
    assert spool.incoming() == [msg_id]
    assert spool.read_incoming(msg_id) == (e, BODY)
    await spool.route(
        msg_id,
        [
            ("postoffice", e.with_rcpts(("example/a",))),
            ("smtp", e.with_rcpts(("b@other.test",))),
        ],
    )
    assert spool.incoming() == []
    assert spool.stats()["postoffice"] == 1 and spool.stats()["smtp"] == 1
    (rid,) = spool.due("postoffice", 2000.0, 10)
    assert spool.claim("postoffice", rid)
    assert not spool.claim("postoffice", rid)  # one worker at a time
    rec_env, mid = spool.read_record("postoffice", rid)
    assert rec_env.rcpts == ("example/a",) and mid == msg_id
    assert spool.read_message(mid) == BODY
    await spool.done("postoffice", rid)
    spool.release("postoffice", rid)
    (rid2,) = spool.due("smtp", 2000.0, 10)
    await spool.done("smtp", rid2)
    await spool.aclose()
    # Finished work leaves no segment behind once nothing refers to it.
    again = opened(tmp_path)
    assert again.stats() == {"incoming": 0, "quarantine": 0}
    assert len(segments(tmp_path)) == 1  # only the new, empty one


async def test_route_with_no_records_finishes_the_message(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    msg_id = await spool.receive(env(), BODY)
    await spool.route(msg_id, [])
    assert spool.stats()["incoming"] == 0
    await spool.aclose()
    assert opened(tmp_path).incoming() == []


async def test_update_move_and_due_order(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    ids = []
    for _ in range(3):
        e = env()
        msg_id = await spool.receive(e, BODY)
        await spool.route(msg_id, [("smtp", e)])
        ids.append(f"{msg_id}.0")
    later = env(attempts=1, next_try=5000.0)
    await spool.update("smtp", ids[0], later)
    assert sorted(spool.due("smtp", 2000.0, 10)) == sorted(ids[1:])
    assert spool.due("smtp", 6000.0, 10)[-1] == ids[0]
    assert spool.next_due("smtp") == 0.0
    await spool.move("smtp", ids[1], "badmail")
    assert spool.records("badmail") == [ids[1]]
    # All of it survives a restart, crash or not.
    again = opened(tmp_path)
    assert sorted(again.records("smtp")) == sorted([ids[0], ids[2]])
    assert again.read_record("smtp", ids[0])[0].attempts == 1
    assert again.due("smtp", 2000.0, 10) == [ids[2]]
    assert again.records("badmail") == [ids[1]]
    assert again.read_message(ids[1].split(".")[0]) == BODY  # read back from disk


async def test_concurrent_receives_are_group_committed(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    ids = await asyncio.gather(*(spool.receive(env(), BODY * n) for n in range(1, 101)))
    assert len(set(ids)) == 100
    # One fdatasync covers many messages: far fewer syncs than messages.
    assert spool.journal.syncs < 50, spool.journal.syncs
    reopened = opened(tmp_path)
    assert sorted(reopened.incoming()) == sorted(ids)


async def test_a_full_disk_fails_the_write_and_leaves_no_torn_frame(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    good = await spool.receive(env(), BODY)
    path = segments(tmp_path)[-1]
    size = path.stat().st_size
    # The kernel refuses the write: the journal's fd is pointed at /dev/full.
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, spool.journal._fd)
    os.close(full)
    try:
        await spool.receive(env(), BODY)
    except Exception as exc:  # TemporaryFailure: the SMTP session says 452
        assert "disk full" in str(exc)
    else:
        raise AssertionError("a write to a full disk was acknowledged")
    assert path.stat().st_size == size
    assert opened(tmp_path).incoming() == [good]


# -- recovery rows --------------------------------------------------------------


async def test_a_torn_tail_is_ignored_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    kept = await spool.receive(env(), BODY)
    path = segments(tmp_path)[-1]
    torn, _ = fr.accept(new_id(), env(), b"never acknowledged")
    with path.open("ab") as fh:
        fh.write(torn[:-7])
    again = Spool(tmp_path)
    report = again.open()
    assert report.torn_bytes == len(torn) - 7 and report.quarantined == 0
    assert again.incoming() == [kept]


async def test_a_lost_route_routes_the_message_again(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    e = env()
    msg_id = await spool.receive(e, BODY)
    await spool.route(msg_id, [("postoffice", e)])
    [route] = [f for f in frames_of(tmp_path, msg_id) if f.kind == fr.ROUTE]
    drop_frames_after(route.path, route.offset)  # the crash came before the ROUTE hit the disk
    again = opened(tmp_path)
    assert again.incoming() == [msg_id]
    assert again.records("postoffice") == []


async def test_a_lost_done_repeats_the_delivery_flagged(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    e = env()
    msg_id = await spool.receive(e, BODY)
    await spool.route(msg_id, [("postoffice", e), ("smtp", e)])
    await spool.done("postoffice", f"{msg_id}.0")
    await spool.journal.drain()
    [done] = [f for f in frames_of(tmp_path, msg_id) if f.kind == fr.DONE]
    drop_frames_after(done.path, done.offset)
    again = Spool(tmp_path)
    assert again.open().after_crash
    assert again.records("postoffice") == [f"{msg_id}.0"]
    assert again.possible_duplicate("postoffice", f"{msg_id}.0")


async def test_damage_to_a_message_quarantines_it_and_asks_for_a_notice(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    bad = await spool.receive(env(), BODY + b"the words")
    routed_e = env()
    routed = await spool.receive(routed_e, BODY)
    await spool.route(routed, [("smtp", routed_e), ("postoffice", routed_e)])
    await spool.aclose()
    damage_body(tmp_path, bad, b"the words")
    again = Spool(tmp_path)
    report = again.open()
    assert report.quarantined == 1
    assert again.incoming() == []  # the damaged one is out, never delivered
    assert sorted(again.records("smtp") + again.records("postoffice")) == [
        f"{routed}.0",
        f"{routed}.1",
    ]
    [entry] = again.quarantined()
    assert entry["id"] == bad and entry["notify"] is True and entry["from"] == ENV.mail_from
    # Found again at the next start: never set aside (or announced) twice.
    again.close()
    third = Spool(tmp_path)
    assert third.open().quarantined == 0
    assert len(third.quarantined()) == 1


async def test_a_routed_message_lost_to_damage_tells_its_sender(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    e = env()
    msg_id = await spool.receive(e, BODY)
    await spool.route(msg_id, [("smtp", e)])
    await spool.aclose()
    damage_accept_header(tmp_path, msg_id)  # not even the envelope of the ACCEPT is readable
    again = Spool(tmp_path)
    report = again.open()
    assert again.records("smtp") == []
    names = [str(q["name"]) for q in again.quarantined()]
    assert report.quarantined == 2 and any(n.startswith("journal-lost-") for n in names)
    [notice] = again.pending_notices()
    assert notice["id"] == msg_id and notice["from"] == e.mail_from


async def test_a_message_found_damaged_at_work_is_set_aside_for_good(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    e = env()
    msg_id = await spool.receive(e, BODY + b"the words")
    await spool.route(msg_id, [("smtp", e), ("postoffice", e)])
    await spool.journal.drain()
    # The disk goes bad while the server runs, and the text is no longer in memory.
    spool._forget(msg_id)
    damage_body(tmp_path, msg_id, b"the words")
    with pytest.raises(Damaged) as info:
        spool.read_message(msg_id)
    await spool.quarantine_record("smtp", f"{msg_id}.0", info.value)
    assert spool.records("smtp") == [] and spool.records("postoffice") == []  # all its records
    [entry] = spool.pending_notices()
    assert entry["id"] == msg_id and entry["from"] == e.mail_from
    await spool.aclose()
    # It does not come back at the next start.
    again = opened(tmp_path)
    assert again.records("smtp") == [] and again.incoming() == []
    assert len(again.quarantined()) == 1


async def test_records_found_after_a_crash_are_flagged_as_possible_duplicates(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    assert not spool.open().after_crash  # a fresh spool is not a crash
    e = env()
    msg_id = await spool.receive(e, BODY)
    await spool.route(msg_id, [("postoffice", e)])
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
    e = env()
    first = await spool.receive(e, BODY)
    # The same trace id again (a badmail resend while the original is queued),
    # twice at once: neither may overwrite the other.
    again, twice = await asyncio.gather(spool.receive(e, BODY), spool.receive(e, BODY))
    assert len({first, again, twice}) == 3
    for msg_id in (again, twice):
        assert spool.read_incoming(msg_id)[0] == replace(e, trace_id=msg_id)
    odd = await spool.receive(replace(e, trace_id="../x"), BODY)
    assert is_id(odd) and spool.read_incoming(odd)[0].trace_id == odd
    reopened = Spool(tmp_path)
    reopened.open()
    assert sorted(reopened.incoming()) == sorted([first, again, twice, odd])


# -- segments and compaction ---------------------------------------------------------


async def test_segments_rotate_and_finished_ones_are_deleted(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=4096)
    sent = []
    for n in range(40):
        e = env()
        msg_id = await spool.receive(e, BODY + b"x" * 300)
        await spool.route(msg_id, [("smtp", e)])
        sent.append(f"{msg_id}.0")
    assert len(segments(tmp_path)) > 3
    for rid in sent[:-1]:
        await spool.done("smtp", rid)
    await spool.journal.drain()
    await asyncio.sleep(0.1)  # deletions run in the spool's I/O threads
    # Only the segments the one live message (and the current one) need are left.
    assert len(segments(tmp_path)) <= 3
    again = opened(tmp_path)
    assert again.records("smtp") == [sent[-1]]


async def test_compaction_copies_long_lived_messages_forward(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=4096)
    e = env()
    old = await spool.receive(e, BODY + b"deferred for days")
    await spool.route(old, [("smtp", e)])
    await spool.update("smtp", f"{old}.0", replace(e, attempts=3, next_try=9999.0))
    for _ in range(30):  # traffic that comes and goes
        f = env()
        msg_id = await spool.receive(f, BODY + b"y" * 300)
        await spool.route(msg_id, [("postoffice", f)])
        await spool.done("postoffice", f"{msg_id}.0")
    # Finished traffic's segments are gone already; the deferred message keeps its first.
    first = accept_of(tmp_path, old).path.name
    before = {p.name for p in segments(tmp_path)}
    assert len(before) == 2 and first in before
    assert await spool.compact(older_than=0) == 1
    await spool.journal.drain()
    await asyncio.sleep(0.1)
    after = {p.name for p in segments(tmp_path)}
    assert first not in after and len(after) == 1
    # A crash now: the copy carries the record's current state.
    again = opened(tmp_path)
    assert again.records("smtp") == [f"{old}.0"]
    rec, _ = again.read_record("smtp", f"{old}.0")
    assert rec.attempts == 3 and rec.next_try == 9999.0
    assert again.read_message(old) == BODY + b"deferred for days"
    assert accept_of(tmp_path, old).path.name in after


# -- the old layout ---------------------------------------------------------------------


def _old_file(envelope: Envelope, msg_id: str, body: bytes = b"") -> bytes:
    header = {"env": fr.env_to_json(envelope), "msg": msg_id, "len": len(body)}
    head = b"MPLSPOOL 1\n" + json.dumps(header).encode() + b"\n"
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + body + b"\nEND " + f"{crc:08x}".encode() + b"\n"


async def test_a_spool_of_the_old_layout_is_carried_over(tmp_path: Path) -> None:
    incoming_e, routed_e = env(), env()
    unrouted, routed = incoming_e.trace_id, routed_e.trace_id
    for sub in ("incoming", "msg", "q/smtp", "q/postoffice", "tmp"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "incoming" / unrouted).write_bytes(_old_file(incoming_e, unrouted, BODY))
    (tmp_path / "msg" / routed).write_bytes(_old_file(routed_e, routed, BODY + b"routed"))
    (tmp_path / "q" / "smtp" / f"{routed}.0").write_bytes(_old_file(routed_e, routed))
    (tmp_path / "q" / "postoffice" / f"{routed}.1").write_bytes(b"damaged record")
    spool = Spool(tmp_path)
    report = spool.open()
    assert report.migrated == 2
    assert spool.incoming() == [unrouted]
    assert spool.records("smtp") == [f"{routed}.0"]
    assert spool.read_message(routed) == BODY + b"routed"
    # Carried over and gone from the old place; a damaged old file stays for the admin.
    assert not (tmp_path / "incoming" / unrouted).exists()
    assert (tmp_path / "q" / "postoffice" / f"{routed}.1").exists()
    spool.close()
    assert Spool(tmp_path).open().migrated == 0
