"""Crash at every named spool step (os._exit, like kill -9) and check recovery.

A child process receives one message, routes it to two queues and finishes
both records, printing ACK / ROUTED / DONE as each step returns. MAILPLAT_FAULT
kills it at one point (the journal's write, its fdatasync, and each spool
step). Then the test opens the spool and checks the rule for what the child
got to: nothing acknowledged may be lost, nothing partial may show, and after
recovery the message can still be carried to the end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailplat.spool.queue import Spool

CHILD = r"""
import asyncio, sys
from pathlib import Path
from mailplat.core.envelope import Envelope
from mailplat.spool.queue import Spool

async def main() -> None:
    spool = Spool(Path(sys.argv[1]))
    spool.open()
    env = Envelope("s@remote.test", ("a@example.test", "b@other.test"), "T1", 1.0)
    msg_id = await spool.receive(env, b"Subject: crash\n\nbody\n")
    print("ACK", msg_id, flush=True)
    await spool.route(msg_id, [("postoffice", env), ("smtp", env)])
    print("ROUTED", flush=True)
    for queue in ("postoffice", "smtp"):
        for rid in spool.records(queue):
            print("FINISHING", queue, flush=True)
            await spool.done(queue, rid)
    print("DONE-CALLED", flush=True)
    await spool.journal.drain()
    print("DONE", flush=True)

asyncio.run(main())
"""

POINTS = [
    "spool.journal-written:1",  # ACCEPT written, not yet fdatasynced: no ACK
    "spool.journal-synced:1",  # ACCEPT synced, the 250 not yet given
    "spool.accepted:1",  # the receive returned: ACK about to be printed
    "spool.journal-written:2",  # ROUTE written
    "spool.routed:1",  # route returned
    "spool.done:1",  # first record finished (its DONE queued)
    "spool.journal-written:3",  # the first DONE written
    "spool.done:2",  # last record finished
]


@pytest.mark.parametrize("point", POINTS)
def test_crash_point(tmp_path: Path, point: str) -> None:
    root = tmp_path / "spool"
    env = {**os.environ, "MAILPLAT_FAULT": point}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 137, proc.stderr
    said = proc.stdout.split()
    spool = Spool(root)
    report = spool.open()
    assert report.quarantined == 0  # a crash is never damage
    held = spool.incoming()
    records = spool.records("postoffice") + spool.records("smtp")
    if "ACK" not in said:
        # Never acknowledged: it may be there whole or not at all.
        assert records == []
        assert len(held) <= 1
    elif held:
        # Acknowledged, its ROUTE not on disk: it waits to be routed (again).
        assert held == [said[1]] and records == []
    else:
        # Acknowledged and routed: a record is gone only once done() was called
        # for it (a DONE the crash kept from the disk brings its record back).
        finishing = {said[i + 1] for i, w in enumerate(said) if w == "FINISHING"}
        for queue in ("postoffice", "smtp"):
            if queue not in finishing:
                assert spool.records(queue), f"{queue}: an acknowledged message was lost"
    for msg_id in held:
        env, body = spool.read_incoming(msg_id)
        assert body == b"Subject: crash\n\nbody\n"
        assert env.rcpts == ("a@example.test", "b@other.test")

    async def finish() -> None:
        for msg_id in spool.incoming():
            env, _ = spool.read_incoming(msg_id)
            await spool.route(msg_id, [("postoffice", env), ("smtp", env)])
        for queue in ("postoffice", "smtp"):
            for rid in spool.records(queue):
                _, msg_id = spool.read_record(queue, rid)
                assert spool.read_message(msg_id).endswith(b"body\n")
                await spool.done(queue, rid)

    asyncio.run(finish())
    assert not any(spool.stats().values()), spool.stats()
