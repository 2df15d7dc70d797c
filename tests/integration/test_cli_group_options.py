"""Options given on a command group reach the subcommand: `queue quarantine --data DIR list`.

The queue, badmail and quarantine groups take --site, --data and --json and
the users group --site; whatever is given before the subcommand's name acts
as if given after it (the subcommand's own value wins). The queue commands
run against a real server's control socket, as the installed command.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from tests.fixtures.clirun import copy_example, run_process
from tests.support import running, write_site


async def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_process, *args)


async def test_queue_and_badmail_group_options_reach_the_subcommand(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    data = tmp_path / "data"
    elsewhere = tmp_path / "no-server-here"
    async with running(site, data):
        forms = [
            ["queue", "quarantine", "--data", data, "list", "--json"],
            ["queue", "quarantine", "--data", data, "--json", "list"],
            ["queue", "quarantine", "--data", data, "--json"],
            ["queue", "--data", data, "--json", "quarantine", "list"],
            ["queue", "--data", data, "quarantine", "--json"],
            ["queue", "--data", data, "--json", "list"],
            ["queue", "--data", data, "list", "--queue", "all", "--json"],
            ["badmail", "--data", data, "--json", "list"],
            # The subcommand's own --data wins over the group's.
            ["queue", "--data", elsewhere, "list", "--data", data, "--json"],
        ]
        for args in forms:
            res = await _run(*args)
            assert res.returncode == 0, (args, res.stderr)
            assert json.loads(res.stdout) == [], args
        table = await _run("queue", "quarantine", "--data", data, "list")
        assert table.returncode == 0 and "empty" in table.stdout, table.stderr
        # An id command gets the group's --data too: the server answers "no such message".
        missing = await _run("queue", "--data", data, "show", "NOPE")
        assert missing.returncode == 3, missing.stderr
        assert "Traceback" not in missing.stderr


def test_users_group_takes_the_site(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    command = ["export", "--fields", "email"]
    before = run_process("users", *command, site)
    after = run_process("users", "--site", site, *command)
    assert before.returncode == after.returncode == 0, after.stderr
    assert after.stdout == before.stdout and "dave@shop.test" in after.stdout
    csv = tmp_path / "u.csv"
    csv.write_text("zed@example.test,zed-secret-pass,10\n")
    imported = run_process("users", "--site", site, "import", csv, "-p", "example")
    assert imported.returncode == 0, imported.stderr
    assert "zed@example.test" in run_process("users", "--site", site, *command).stdout
