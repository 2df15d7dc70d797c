"""Crash at every named spool step (os._exit, like kill -9) and check recovery.

A child process receives one message, routes it to two queues and finishes
both records, printing ACK / ROUTED / DONE as each step returns. MAILPLAT_FAULT
kills it at one point. Then the test opens the spool and checks the rule for
what the child got to: nothing acknowledged may be lost, nothing partial may
show, and after recovery the message can still be carried to the end.
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
            await spool.done(queue, rid)
    print("DONE", flush=True)

asyncio.run(main())
"""

POINTS = [
    "spool.written:1",  # message fsynced in tmp/, not renamed
    "spool.renamed:1",  # renamed into incoming/, directory not synced
    "spool.written:2",  # first record written
    "spool.records-written:1",  # all records durable, message not moved
    "spool.done-unlinked:1",  # first record finished
    "spool.done-unlinked:2",  # last record finished, message not unlinked
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
    assert not os.listdir(root / "tmp")
    assert report.quarantined == 0
    held = spool.incoming()
    records = spool.records("postoffice") + spool.records("smtp")
    if "ACK" not in said:
        # Never acknowledged: it may be there whole or not at all.
        assert records == []
        assert len(held) <= 1
    elif "ROUTED" not in said:
        assert held == [said[1]], "an acknowledged message was lost"
        assert records == []
    else:
        assert held == []
        assert "DONE" not in said
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
    for sub in ("tmp", "incoming", "msg", "q/postoffice", "q/smtp"):
        path = root / sub
        assert not path.exists() or not os.listdir(path), sub
