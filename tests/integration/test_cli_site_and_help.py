"""The CLI's surface: one way to name a site on every command, readable --help screens.

These run the installed `mailplat` console script as a subprocess (the same
entry point an admin types), so the help screens are the real ones.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.clirun import EXAMPLE, ROOT, mailplat_exe, run_process

# Every command that works on a site; each must take SITE and --site SITE alike.
SITE_COMMANDS = [
    ["validate"],
    ["plan"],
    ["route", "carol@example.org"],
    ["users", "export"],
    ["status"],
]


def _help(*command: str) -> str:
    res = subprocess.run(
        [mailplat_exe(), *command, "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "160", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("command", SITE_COMMANDS, ids=lambda c: " ".join(c))
def test_site_is_positional_or_option_everywhere(command: list[str], tmp_path: Path) -> None:
    data = ["--data", str(tmp_path)] if command[0] in ("plan", "status") else []
    positional = run_process(*command, EXAMPLE, *data)
    option = run_process(*command, "--site", EXAMPLE, *data)
    # The same outcome both ways (status: no server runs on this data root).
    assert positional.returncode == option.returncode, (positional.stderr, option.stderr)
    assert positional.stdout == option.stdout
    assert positional.returncode in (0, 1, 2)
    if command[0] == "status":
        assert "no server is running" in positional.stderr
    else:
        assert positional.returncode != 1, positional.stderr
    # Naming no site, or two different ones, is a one-line error, not a traceback.
    neither = run_process(*command, *data)
    assert neither.returncode == 1 and "which site?" in neither.stderr
    both = run_process(*command, EXAMPLE, "--site", tmp_path, *data)
    assert both.returncode == 1 and "two different sites" in both.stderr
    assert "Traceback" not in neither.stderr + both.stderr


def test_git_install_hooks_takes_the_site_like_every_command(tmp_path: Path) -> None:
    bare = tmp_path / "mail.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    hook = bare / "hooks" / "pre-receive"
    for how in (["sites/example"], ["--site", "sites/example"], ["--site", "example"]):
        res = run_process("git", "install-hooks", bare, *how, "--data", tmp_path / "data")
        assert res.returncode == 0, res.stderr
        assert "--site 'sites/example'" in hook.read_text()
        assert f"{tmp_path / 'data' / 'deploy' / 'sites' / 'example'}" in res.stdout


def test_users_import_takes_the_site_positionally(tmp_path: Path) -> None:
    from tests.fixtures.clirun import copy_example

    site = copy_example(tmp_path)
    csv = tmp_path / "u.csv"
    csv.write_text("zed@example.test,zed-secret-pass,10\n")
    res = run_process("users", "import", csv, site, "--postoffice", "example")
    assert res.returncode == 0, res.stderr
    exported = run_process("users", "export", site, "--fields", "email")
    assert "zed@example.test" in exported.stdout


HELP_SCREENS = [
    ["validate"],
    ["plan"],
    ["apply"],
    ["route"],
    ["serve"],
    ["status"],
    ["passwd"],
    ["schema"],
    ["users", "import"],
    ["users", "export"],
    ["git", "install-hooks"],
    ["tls", "self-signed"],
    ["queue", "list"],
]


@pytest.mark.parametrize("command", HELP_SCREENS, ids=lambda c: " ".join(c))
def test_help_shows_metavars_not_python_types(command: list[str]) -> None:
    text = _help(*command)
    assert not re.search(r"<(bool|str|int|path|float)>", text), text


def test_help_flags_show_no_type_and_values_a_metavar() -> None:
    text = _help("apply")
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ ")}
    for flag in ("--json", "--yes", "--verbose", "--help"):
        words = rows[flag].split("│")[1].split()
        # the option, maybe its short form, then straight to the description
        assert words[1] in ("-y", "-v", "Print", "Apply", "List", "Show"), rows[flag]
    assert " DIR " in rows["--data"]
    assert " PATH " in rows["--site"]
    assert "Usage: mailplat apply [OPTIONS] [SITE]" in text
    route = _help("route")
    assert "--from" in route and re.search(r"--from\s+TEXT", route)
    assert "ADDRESS" in route
    passwd = _help("passwd")
    assert re.search(r"--length\s+N", passwd)


def test_validate_json_is_unchanged_by_site_option(tmp_path: Path) -> None:
    a = json.loads(run_process("validate", EXAMPLE, "--json").stdout)
    b = json.loads(run_process("validate", "--site", ROOT / "sites" / "example", "--json").stdout)
    assert a == b and a["ok"] is True


def test_make_shell_puts_mailplat_on_the_path() -> None:
    res = subprocess.run(
        ["make", "-s", "shell"],
        input="command -v mailplat\nmailplat passwd --random --json\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert f"{ROOT}/.venv/bin/mailplat" in res.stdout
    assert '"hash": "$argon2id$' in res.stdout


def _readme_commands(prefix: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [
        line.split("#")[0].strip()
        for line in text.splitlines()
        if line.startswith(prefix) and "#" in line
    ]


def test_readme_documents_the_first_hour_commands_and_they_run(tmp_path: Path) -> None:
    from tests.fixtures.clirun import copy_example

    site = copy_example(tmp_path)
    wanted = {
        "mailplat users import": 1,
        "mailplat users export": 2,
        "mailplat tls self-signed": 2,
        "mailplat passwd --random": 2,
    }
    for prefix, at_least in wanted.items():
        lines = _readme_commands(prefix)
        assert len(lines) >= at_least, (prefix, lines)
        for line in lines:
            args = line.split()[1:]
            args = [str(site) if a == "sites/example" else a for a in args]
            args = [str(tmp_path / "tls") if a == "sites/example/tls" else a for a in args]
            if args[:2] == ["users", "import"]:
                csv = tmp_path / "users.csv"
                csv.write_text("zed@example.test,zed-secret-pass,10\n")
                args[2] = str(csv)
            res = run_process(*args)
            assert res.returncode == 0, (line, res.stderr)
    assert "make shell" in (ROOT / "README.md").read_text()
    assert ". .venv/bin/activate" in (ROOT / "README.md").read_text()


ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.mark.parametrize(
    ("head", "rest"),
    [
        (["queue", "list"], []),
        (["queue", "show"], [ID]),
        (["queue", "retry"], [ID]),
        (["queue", "quarantine", "list"], []),
        (["badmail", "list"], []),
        (["badmail", "show"], [ID]),
        (["trace"], [ID]),
    ],
    ids=lambda c: " ".join(c),
)
def test_queue_and_trace_take_the_site_first_or_as_option(
    head: list[str], rest: list[str], tmp_path: Path
) -> None:
    """Commands whose own arguments are ids take SITE before them, or --site, alike."""
    data = ["--data", str(tmp_path)]
    positional = run_process(*head, EXAMPLE, *rest, *data)
    option = run_process(*head, *rest, "--site", EXAMPLE, *data)
    # No server runs on this data root (and no log exists): the same one-line answer.
    assert positional.returncode == option.returncode != 0, (positional.stderr, option.stderr)
    assert positional.stderr == option.stderr
    assert "Traceback" not in positional.stderr + option.stderr
    assert "error:" in positional.stderr
