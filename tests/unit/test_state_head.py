"""The generation head: a cheap read of number and digest that never lies."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mailplat.reconcile.state import (
    GENERATION_FILE,
    HEAD_FILE,
    Generation,
    read_generation_head,
    state_dir,
    write_generation,
)


def gen(number: int, digest: str) -> Generation:
    return Generation(number, digest, "2026-11-28T00:00:00+00:00", "t@h", {"format": 1})


def test_head_matches_the_full_generation(tmp_path: Path) -> None:
    assert read_generation_head(tmp_path) is None
    write_generation(tmp_path, gen(1, "aaa"))
    head = read_generation_head(tmp_path)
    assert head is not None and (head.number, head.digest, head.snapshot) == (1, "aaa", {})


def test_a_stale_head_falls_back_to_the_full_file(tmp_path: Path) -> None:
    write_generation(tmp_path, gen(1, "aaa"))
    folder = state_dir(tmp_path)
    # A crash after the full file but before the head: the head is older.
    full = folder / GENERATION_FILE
    data = json.loads(full.read_text())
    data.update(number=2, digest="bbb")
    full.write_text(json.dumps(data))
    stamp = (folder / HEAD_FILE).stat().st_mtime_ns
    os.utime(full, ns=(stamp + 10**9, stamp + 10**9))
    head = read_generation_head(tmp_path)
    assert head is not None and (head.number, head.digest) == (2, "bbb")
