"""The benchmark harness (`python -m bench`) runs end to end in a tiny configuration.

So `make bench` cannot rot: every scenario runs with a few messages against a
real `mailplat serve` and, when this machine can run them (root, apt-get),
against the private Postfix, Dovecot and smtp-sink peers; the JSON record of
each scenario must carry both sides and the ratio, and no peer may be left
running afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers.dovecot import DovecotPeer
from bench.peers.postfix import PostfixPeer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_bench_tiny_runs_every_scenario_on_both_sides(tmp_path: Path) -> None:
    peers = os.geteuid() == 0
    cmd = [sys.executable, "-m", "bench", "--tiny", "--results", str(tmp_path)]
    if not peers:
        cmd.append("--no-peers")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = res.stdout[-6000:] + res.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1, out
    report = json.loads(files[0].read_text())
    env = report["environment"]
    for key in ("cpu_count", "python", "kernel", "postfix", "dovecot"):
        assert key in env, env
    records = report["records"]
    assert {r["scenario"] for r in records} == {"1", "2", "3", "4", "5", "6", "7", "8"}, out
    errors = [r for r in records if r["status"] == "error"]
    assert not errors, json.dumps(errors, indent=1) + out
    assert res.returncode == 0, out

    # The server side is measured in every scenario that needs only `mailplat serve`.
    for r in records:
        if r["scenario"] in ("1", "2", "3", "4", "6", "7", "8"):
            assert r["status"] == "ok" and r["mailplat"] is not None, r
        assert r["status"] in ("ok", "pending"), r  # 5: validate/plan/apply may be pending

    if peers and not report["peer_errors"]:
        for r in records:
            if r["scenario"] in ("1", "2", "3", "4", "6", "7", "8"):
                assert r["peer"] and r["ratio"], r
        assert all(r["sink"] for r in records if r["scenario"] in ("1", "2")), records
    # Nothing left running: the peers' pid files are gone with their queues.
    assert PostfixPeer(port=0).master_pid() is None
    assert DovecotPeer(port=0).master_pid() is None
    # Reloads under load: nothing failed, nothing lost, on our side.
    (s8,) = [r for r in records if r["scenario"] == "8"]
    assert s8["extra"]["mailplat"]["failed"] == 0, s8
    assert s8["extra"]["mailplat"]["lost"] == 0, s8
