"""Deploy by `git push` over a file:// remote: broken YAML refused, good YAML applied live."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.e2e.serveproc import mailplat, rcpt_code, serve, site_with_ports, status
from tests.support import base_postoffice, dump, pw

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Admin",
    "GIT_AUTHOR_EMAIL": "admin@example.test",
    "GIT_COMMITTER_NAME": "Admin",
    "GIT_COMMITTER_EMAIL": "admin@example.test",
}


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=120
    )


def commit_and_push(work: Path, message: str) -> subprocess.CompletedProcess[str]:
    assert git("add", "-A", cwd=work).returncode == 0
    assert git("commit", "-qm", message, cwd=work).returncode == 0
    return git("push", "origin", "main", cwd=work)


def test_push_refuses_broken_yaml_and_applies_good_yaml(tmp_path: Path) -> None:
    bare = tmp_path / "mail.git"
    assert git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path).returncode == 0
    data = tmp_path / "data"
    res = mailplat("git", "install-hooks", str(bare), "--site", "example", "--data", str(data))
    assert res.returncode == 0, res.stdout + res.stderr

    generated, ports = site_with_ports(tmp_path / "gen")
    work = tmp_path / "work"
    assert git("clone", "-q", f"file://{bare}", str(work), cwd=tmp_path).returncode == 0
    assert git("checkout", "-q", "-b", "main", cwd=work).returncode == 0
    shutil.copytree(generated, work / "sites" / "example")
    first = commit_and_push(work, "first site")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "is valid" in first.stderr
    deployed = data / "deploy" / "sites" / "example"
    assert (deployed / "site.yaml").exists()

    with serve(deployed, data, ports["smtp"]):
        assert status(deployed, data)["generation"] == 1
        # A broken change never gets in: the push fails and says where.
        po_file = work / "sites" / "example" / "postoffices" / "example.yaml"
        po_file.write_text("domains:\n  example.test: {}\nmailboxes:\n  zed:\n    pasword: x\n")
        broken = commit_and_push(work, "typo")
        assert broken.returncode != 0
        assert "push refused" in broken.stderr
        assert "sites/example/postoffices/example.yaml:5:5" in broken.stderr, broken.stderr
        assert status(deployed, data)["generation"] == 1
        # The fix goes live through the running server.
        po = base_postoffice()
        po["mailboxes"]["zed"] = {"password": pw("zed-secret")}
        dump(po_file, po)
        good = commit_and_push(work, "add zed")
        assert good.returncode == 0, good.stderr
        assert "Live: generation 2" in good.stderr
        assert rcpt_code(ports["smtp"], "zed@example.test") == 250
        assert status(deployed, data)["generation"] == 2
