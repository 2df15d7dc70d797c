"""A generated site of 1,000 postoffices x 10 mailboxes loads, validates and plans.

Nothing about time is asserted here (bench/ measures it); this proves the
whole path works at that size.
"""

from __future__ import annotations

from pathlib import Path

from mailplat.config.directory import Directory
from mailplat.config.load import load_site
from mailplat.reconcile.diff import diff
from mailplat.reconcile.state import snapshot

N_PO, N_MB = 1000, 10


def _write_site(root: Path) -> Path:
    site = root / "big"
    (site / "postoffices").mkdir(parents=True)
    (site / "site.yaml").write_text("server:\n  local_domain: big.test\n")
    for i in range(N_PO):
        lines = [
            f"domains:\n  d{i}.test: {{catchall: postmaster}}\nmailboxes:\n  postmaster: {{}}\n"
        ]
        lines += [f"  u{j}: {{quota_mb: {j + 1}}}\n" for j in range(N_MB - 1)]
        lines.append(f"groups:\n  all:\n    address: all@d{i}.test\n    members: [u0@d{i}.test]\n")
        (site / "postoffices" / f"po{i:04d}.yaml").write_text("".join(lines))
    return site


def test_big_site_loads_validates_and_plans(tmp_path: Path) -> None:
    config = load_site(_write_site(tmp_path))
    assert len(config.postoffices) == N_PO
    directory = Directory(config)
    assert len(directory.mailboxes) == N_PO * N_MB
    assert directory.mailbox_for_login("u3@po0999") is not None
    plan = diff(snapshot(config), config, old_digest=config.digest, new_directory=directory)
    assert plan.empty
