"""Help screens name what to type: `[SITE] ID` for id arguments, DIR for every --data.

The command tree is walked in-process to find every command (so a new one is
covered too); each help screen is then rendered by the installed `mailplat`
command, as an admin sees it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mailplat.cli import _register, app
from mailplat.cli.help import build
from tests.integration.test_cli_site_and_help import _help

_register()
TREE = build(app)


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if sub.hidden:
            continue
        yield (*path, name), sub
        yield from _walk(sub, (*path, name))


COMMANDS = dict(_walk(TREE))
WITH_DATA = [p for p, c in COMMANDS.items() if any(x.name == "data" for x in c.params)]
# Commands whose arguments are ids after an optional site, and the usage they must show.
ID_USAGE = {
    ("trace",): "[SITE] ID",
    ("queue", "show"): "[SITE] ID",
    ("queue", "retry"): "[SITE] [ID]...",
    ("queue", "delete"): "[SITE] ID",
    ("queue", "bounce"): "[SITE] ID",
    ("queue", "quarantine", "show"): "[SITE] NAME",
    ("badmail", "show"): "[SITE] ID",
    ("badmail", "resend"): "[SITE] ID",
    ("badmail", "delete"): "[SITE] ID",
}


@pytest.fixture(scope="module")
def screens() -> dict[tuple[str, ...], str]:
    wanted = sorted({*WITH_DATA, *ID_USAGE})
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(wanted, pool.map(lambda p: _help(*p), wanted), strict=True))


def test_every_data_option_is_a_dir(screens: dict[tuple[str, ...], str]) -> None:
    # serve, queue, badmail, status, plan, apply, trace, git install-hooks at least.
    assert {("serve",), ("queue", "list"), ("badmail", "list"), ("git", "install-hooks")} <= set(
        WITH_DATA
    )
    for path in WITH_DATA:
        # The option's row of the table (its own help text may mention --data too).
        rows = [
            line for line in screens[path].splitlines() if re.match(r"│\s+(\*\s+)?--data ", line)
        ]
        assert len(rows) == 1, (path, screens[path])
        assert re.search(r"--data\s+DIR\s", rows[0]), (path, rows[0])


@pytest.mark.parametrize("path", list(ID_USAGE), ids=" ".join)
def test_id_arguments_show_their_metavar(
    path: tuple[str, ...], screens: dict[tuple[str, ...], str]
) -> None:
    text = screens[path]
    usage = f"Usage: mailplat {' '.join(path)} [OPTIONS] {ID_USAGE[path]}"
    assert re.search(rf"{re.escape(usage)}\s*$", text, re.MULTILINE), text
    assert "list[" not in text and "<" not in text.replace("<site>", ""), text
    row = next(line for line in text.splitlines() if ID_USAGE[path] in line and "│" in line)
    # The argument row: the metavar, then its help, no type column in between.
    assert re.search(rf"{re.escape(ID_USAGE[path])}\s+[A-Z][a-z]", row), row
