"""Offline plan/apply through the real CLI write and read generations as deltas.

A site of 60 postoffices is applied (a checkpoint), one postoffice changes,
`mailplat plan` lists just that change, `mailplat apply` records it as a
delta holding that one postoffice, and the next plan has nothing to do;
plan and the running server read the same folded snapshot.
"""

from __future__ import annotations

import json
from pathlib import Path

from mailplat.reconcile.state import GENERATIONS_DIR, read_generation, state_dir
from tests.fixtures.clirun import run_process


def write_site(root: Path, n: int) -> Path:
    site = root / "site"
    (site / "postoffices").mkdir(parents=True)
    (site / "site.yaml").write_text("server:\n  local_domain: d0.test\n")
    for i in range(n):
        (site / "postoffices" / f"po{i:02d}.yaml").write_text(
            f"domains:\n  d{i}.test: {{postmaster: pm}}\nmailboxes:\n  pm: {{}}\n  u: {{}}\n"
            f"groups:\n  team:\n    address: team@d{i}.test\n    members: [u@d{i}.test]\n"
        )
    return site


def test_one_change_is_planned_and_recorded_as_a_delta(tmp_path: Path) -> None:
    site = write_site(tmp_path, 60)
    data = tmp_path / "data"
    first = run_process("apply", site, "--data", data, "--yes")
    assert first.returncode == 0, first.stderr
    folder = state_dir(data) / GENERATIONS_DIR
    assert json.loads((folder / "000001.json").read_text())["checkpoint"] is True

    path = site / "postoffices" / "po07.yaml"
    path.write_text(path.read_text().replace("address: team@", "address: crew@"))
    plan = run_process("plan", site, "--data", data)
    assert plan.returncode == 2, plan.stderr
    assert "~ group po07/team" in plan.stdout
    assert "Plan: 0 to add, 1 to change, 0 to remove." in plan.stdout
    assert "team@d7.test: mailbox:po07/u → reject" in plan.stdout

    second = run_process("apply", site, "--data", data, "--yes")
    assert second.returncode == 0, second.stderr
    delta = json.loads((folder / "000002.json").read_text())
    assert delta["base"] == 1 and list(delta["postoffices"]) == ["po07"]
    assert list(delta["po_digests"]) == ["po07"]
    assert (folder / "000002.json").stat().st_size * 20 < (folder / "000001.json").stat().st_size

    again = run_process("plan", site, "--data", data)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout
    applied = read_generation(data)
    assert applied is not None and applied.number == 2
    assert applied.snapshot["postoffices"]["po07"]["groups"]["team"]["address"] == "crew@d7.test"
    assert len(applied.snapshot["postoffices"]) == 60
