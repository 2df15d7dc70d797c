"""`mailplat apply` shows its progress on a terminal, and nothing extra in a pipe or with --json.

The terminal is a real pseudo-terminal (pty): rich decides by isatty, as it
does for an admin, so the bar is drawn exactly as they would see it.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

from tests.fixtures.clirun import mailplat_exe, run_process
from tests.support import dump

MAILBOXES = 40  # above the bulk threshold, so the sync phase shows too


def _site(root: Path) -> Path:
    site = root / "big"
    dump(site / "site.yaml", {"server": {"local_domain": "big.test"}})
    boxes = {"postmaster": {}} | {f"m{i}": {} for i in range(MAILBOXES - 1)}
    dump(site / "postoffices" / "po.yaml", {"domains": {"big.test": {}}, "mailboxes": boxes})
    return site


def _on_terminal(*args: str | Path) -> tuple[int, str]:
    """Run mailplat with stdout and stderr on a pty; its exit code and everything it drew."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [mailplat_exe(), *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_apply_draws_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    code, screen = _on_terminal("apply", _site(tmp_path), "--data", tmp_path / "d", "--yes")
    assert code == 0, screen
    assert "provisioning" in screen
    assert f"{MAILBOXES}/{MAILBOXES}" in screen
    assert "syncing to disk" in screen
    assert f"Created {MAILBOXES} Maildir(s)" in screen


def test_apply_in_a_pipe_or_as_json_prints_no_progress(tmp_path: Path) -> None:
    site = _site(tmp_path)
    piped = run_process("apply", site, "--data", tmp_path / "piped", "--yes")
    assert piped.returncode == 0, piped.stderr
    assert "provisioning" not in piped.stdout + piped.stderr
    assert "\x1b[" not in piped.stdout + piped.stderr
    as_json = run_process("apply", site, "--data", tmp_path / "json", "--yes", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["applied_now"] is True
    assert as_json.stderr == ""


def test_apply_through_a_running_server_shows_a_spinner_on_a_terminal(tmp_path: Path) -> None:
    from tests.e2e.serveproc import serve, site_with_ports

    site, ports = site_with_ports(tmp_path)
    data = tmp_path / "data"
    with serve(site, data, ports["smtp"]):
        po = site / "postoffices" / "example.yaml"
        po.write_text(po.read_text().replace("mailboxes:\n", "mailboxes:\n  zed: {}\n", 1))
        code, screen = _on_terminal("apply", site, "--data", data, "--yes")
        assert code == 0, screen
        assert "the server is provisioning 4 Maildir(s)" in screen  # nothing applied before
        assert "Live: generation" in screen
        piped = run_process("apply", site, "--data", data, "--yes")
        assert "provisioning" not in piped.stdout + piped.stderr
