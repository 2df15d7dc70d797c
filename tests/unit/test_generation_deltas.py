"""Generations written as deltas read back to the very snapshot that was applied.

Random sequences of snapshots (postoffices added, changed, removed, site.yaml
sections changed) are written one after the other, each against the one
before; reading the data root back must give the last generation exactly,
including each file's digest. Small changes must be stored as small deltas,
and a crash between a generation's own file and the pointer leaves the
previous generation readable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mailplat.reconcile.state import (
    GENERATION_FILE,
    GENERATIONS_DIR,
    Generation,
    atomic_write,
    read_generation,
    state_dir,
    write_generation,
)

NAMES = [f"po{i}" for i in range(12)]

po_values = st.fixed_dictionaries(
    {"domains": st.dictionaries(st.sampled_from(["a.test", "b.test"]), st.just({}), max_size=2)},
    optional={
        "mailboxes": st.dictionaries(st.sampled_from(["m0", "m1"]), st.just({"quota_mb": 5}))
    },
)


@st.composite
def snapshots(draw: st.DrawFn) -> list[tuple[dict[str, Any], dict[str, str]]]:
    out = []
    pos: dict[str, Any] = {}
    site: dict[str, Any] = {"server": {"host_name": "mx.test"}, "relay": {}}
    for _ in range(draw(st.integers(1, 12))):
        for name in draw(st.lists(st.sampled_from(NAMES), max_size=3)):
            if draw(st.integers(0, 3)) == 0:
                pos.pop(name, None)
            else:
                pos[name] = draw(po_values)
        if draw(st.integers(0, 4)) == 0:
            site = {**site, "relay": {"enabled": draw(st.booleans())}}
        snap = {"format": 1, "site": site, "postoffices": dict(pos)}
        digests = {n: json.dumps(v, sort_keys=True) for n, v in pos.items()}
        out.append((snap, digests))
    return out


def generation(number: int, snap: dict[str, Any], digests: dict[str, str]) -> Generation:
    return Generation(
        number, f"d{number}", "2026-01-01T00:00:00+00:00", "t@h", snap, digests, f"s{number}"
    )


@settings(max_examples=120, deadline=None)
@given(history=snapshots())
def test_deltas_read_back_to_the_applied_snapshot(tmp_path_factory: Any, history: Any) -> None:
    root = tmp_path_factory.mktemp("data")
    previous: Generation | None = None
    for number, (snap, digests) in enumerate(history, 1):
        gen = generation(number, snap, digests)
        write_generation(root, gen, previous)
        back = read_generation(root)
        assert back == gen
        previous = back


def test_a_one_postoffice_change_writes_a_small_delta(tmp_path: Path) -> None:
    pos = {
        f"po{i:04d}": {"domains": {f"po{i}.test": {}}, "mailboxes": {"m0": {}}} for i in range(2000)
    }
    digests = {n: f"h{n}" for n in pos}
    first = generation(1, {"format": 1, "site": {}, "postoffices": pos}, digests)
    write_generation(tmp_path, first)
    changed = dict(pos)
    changed["po0007"] = {"domains": {"po7.test": {}}, "groups": {"team": {"address": "t@po7.test"}}}
    second = generation(
        2, {"format": 1, "site": {}, "postoffices": changed}, {**digests, "po0007": "new"}
    )
    write_generation(tmp_path, second, first)
    folder = state_dir(tmp_path) / GENERATIONS_DIR
    checkpoint = (folder / "000001.json").stat().st_size
    delta = (folder / "000002.json").stat().st_size
    assert delta < checkpoint / 100
    assert json.loads((folder / "000002.json").read_text())["postoffices"].keys() == {"po0007"}
    assert read_generation(tmp_path) == second


def test_a_crash_before_the_pointer_keeps_the_previous_generation(tmp_path: Path) -> None:
    first = generation(1, {"format": 1, "site": {}, "postoffices": {"a": {"x": 1}}}, {"a": "1"})
    write_generation(tmp_path, first)
    # The next generation's own file was written, the pointer not yet.
    atomic_write(
        state_dir(tmp_path) / GENERATIONS_DIR / "000002.json",
        b'{"number": 2, "base": 1, "postoffices": {"a": {"x": 2}}}\n',
    )
    assert read_generation(tmp_path) == first


def test_format_1_generations_are_still_read(tmp_path: Path) -> None:
    old = {
        "number": 3,
        "digest": "abc",
        "applied_at": "2025-01-01T00:00:00+00:00",
        "applied_by": "me@host",
        "snapshot": {"format": 1, "site": {}, "postoffices": {"p": {}}},
    }
    atomic_write(state_dir(tmp_path) / GENERATION_FILE, json.dumps(old).encode())
    back = read_generation(tmp_path)
    assert back is not None and back.number == 3 and back.snapshot == old["snapshot"]
    # The next write starts a new chain with a checkpoint.
    write_generation(
        tmp_path, generation(4, {"format": 1, "site": {}, "postoffices": {}}, {}), back
    )
    again = read_generation(tmp_path)
    assert again is not None and again.number == 4 and again.snapshot["postoffices"] == {}
