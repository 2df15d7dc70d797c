"""Reading on two cores gives what reading on one gives.

map_in_two must return exactly [finish(i, prepare(i)) for i in items], with
a forked child really computing a share; and a whole site read through the
real CLI must report the same result and the same diagnostics with the pool
on and off (MAILPLAT_NO_FORK=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailplat.config.pool import MIN_ITEMS, map_in_two


def prepare(i: int) -> tuple[int, int]:
    return i * i, os.getpid()


def finish(i: int, prepared: tuple[int, int]) -> tuple[int, int, int]:
    return i, prepared[0], prepared[1]


def test_results_are_those_of_one_process_and_a_child_computed_some() -> None:
    if threading.active_count() != 1 or not hasattr(os, "fork"):
        pytest.skip("the pool forks only from a single-threaded process")
    items = list(range(MIN_ITEMS * 2))
    out = map_in_two(prepare, finish, items)
    assert [(i, sq) for i, sq, _ in out] == [(i, i * i) for i in items]
    pids = {pid for *_, pid in out}
    assert os.getpid() in pids and len(pids) == 2


def test_a_child_that_fails_is_replaced_by_this_process() -> None:
    if threading.active_count() != 1 or not hasattr(os, "fork"):
        pytest.skip("the pool forks only from a single-threaded process")
    parent = os.getpid()

    def fragile(i: int) -> int:
        if os.getpid() != parent:
            raise RuntimeError("the child breaks")
        return i + 1

    items = list(range(MIN_ITEMS))
    assert map_in_two(fragile, lambda i, p: p, items) == [i + 1 for i in items]


def test_the_cli_reports_the_same_with_and_without_the_pool(tmp_path: Path) -> None:
    site = tmp_path / "site"
    pos = site / "postoffices"
    pos.mkdir(parents=True)
    (site / "site.yaml").write_text("server:\n  local_domain: big.test\n")
    for i in range(MIN_ITEMS + 50):
        (pos / f"po{i:04d}.yaml").write_text(
            f"domains:\n  d{i}.test: {{postmaster: pm}}\nmailboxes:\n  pm: {{}}\n"
            f"  u1:\n    addresses: [u1x@d{i}.test]\n"
            f"groups:\n  g:\n    address: g@d{i}.test\n    members: [u1@d{(i + 1) % 450}.test]\n"
        )
    (pos / "po0003.yaml").write_text("domains:\n  d3.test: {}\nmailboxes:\n  pm: {quota_mb: ten}\n")
    (pos / "po0100.yaml").write_text("domains: [unclosed\n")
    (pos / "po0200.yaml").write_text("domains:\n  d201.test: {}\n")  # someone else's domain

    def run(no_fork: str) -> dict[str, object]:
        env = {**os.environ, "MAILPLAT_NO_FORK": no_fork}
        res = subprocess.run(
            [sys.executable, "-m", "mailplat", "validate", str(site), "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        assert res.returncode == 1, res.stderr
        return json.loads(res.stdout)

    pooled, single = run("0"), run("1")
    assert pooled == single
    summaries = [d["summary"] for d in pooled["diagnostics"]]  # type: ignore[union-attr, index]
    assert any("YAML syntax error" in s for s in summaries)
    assert any("whole number" in s for s in summaries)
    assert any("d201.test already belongs" in s for s in summaries)
