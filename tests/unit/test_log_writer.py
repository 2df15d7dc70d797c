"""The batched log writer with real files: what a record reads, odd records, rollover, stop.

setup() is the one `mailplat serve` calls; each test takes its handlers off
again (shutdown()), so no other test logs into a deleted folder.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailplat.runtime import logging as runtime_logging

log = logging.getLogger("mailplat.test")


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    runtime_logging.setup(tmp_path, json_file=True, w3c=True, activity=True, rollover="hourly")
    yield tmp_path
    runtime_logging.shutdown()


def _events(logs: Path) -> list[dict[str, Any]]:
    runtime_logging.flush()
    lines = (logs / "mailplat.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"logger": "mailplat.test"' in line]


def test_a_record_reads_as_it_was_when_logged(logs: Path) -> None:
    rcpts = ["a@x.test"]
    log.info("smtp accepted id=%s rcpts=%s n=%d", "ID1", rcpts, 1)
    rcpts.append("b@x.test")  # changed before the writer gets to it
    [event] = _events(logs)
    assert event["event"] == "smtp accepted"
    assert event["rcpts"] == "['a@x.test']" and event["n"] == 1


def test_odd_records_are_written_not_lost(logs: Path) -> None:
    log.info({"a": "message that is not a string"})
    log.info("mapping %(who)s", {"who": "me"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("with traceback id=%s", "ID2")
    events = _events(logs)
    assert [e.get("msg") for e in events[:2]] == [
        "{'a': 'message that is not a string'}",
        "mapping me",
    ]
    assert events[2]["id"] == "ID2" and "ValueError: boom" in events[2]["exc"]


def test_records_from_any_thread_keep_their_order_per_thread(logs: Path) -> None:
    def work(n: int) -> None:
        for i in range(500):
            log.info("thread work t=%d i=%d", n, i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = _events(logs)
    assert len(events) == 2000
    for n in range(4):
        assert [e["i"] for e in events if e["t"] == n] == list(range(500))


def test_rollover_still_happens_and_trace_reads_both_files(logs: Path) -> None:
    log.info("delivery ok id=%s", "ID3")
    runtime_logging.flush()
    for handler in logging.getLogger("mailplat").handlers:
        for sink in getattr(handler, "writer").sinks:
            sink.handler.rolloverAt = 0  # the hour is over
    log.info("delivery ok id=%s", "ID3")
    logging.getLogger("mailplat.w3c").info("127.0.0.1 - - QUIT - 221")
    runtime_logging.flush()
    files = runtime_logging.log_files(logs)
    assert len(files) == 2 and files[-1].name == "mailplat.jsonl"
    assert [e["event"] for e in runtime_logging.trace(logs, "ID3")] == ["delivery ok"] * 2
    rolled_w3c = [p for p in logs.iterdir() if p.name.startswith("smtp-w3c.log.")]
    assert len(rolled_w3c) == 1
    assert (logs / "smtp-w3c.log").read_text().startswith("#Software: mailplat\n")
    assert (logs / "activity.log").read_text().count("delivery ok") == 1


def test_shutdown_writes_everything(tmp_path: Path) -> None:
    runtime_logging.setup(tmp_path, json_file=True)
    for i in range(5000):
        log.info("many i=%d", i)
    runtime_logging.shutdown()  # what logging.shutdown() does at exit, through close()
    lines = (tmp_path / "mailplat.jsonl").read_text().splitlines()
    assert sum('"event": "many"' in line for line in lines) == 5000
    assert logging.getLogger("mailplat").handlers == []
