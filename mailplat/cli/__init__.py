"""The `mailplat` command: a typer app whose commands live one per module.

This package is the only place that prints or exits. Each command module has
`register(app)`; errors from the layers below arrive as MailplatError and
become a message and an exit code here (0 ok / no changes, 1 error,
2 plan has changes).
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="mailplat",
    help="A mail platform whose whole configuration is code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One module per command group; each has register(app).
COMMAND_MODULES = (
    "check",
    "plan",
    "apply",
    "route",
    "passwd",
    "schema",
    "users",
    "serve",
    "status",
    "git",
    "queue",
    "tls",
    "trace",
    "dkim",
    "dns",
)


# The commands a big site's edit loop runs load only the modules they need:
# importing every command (the runtime behind `serve`, the queue tools) costs
# a fifth of a second per run. `check` registers two commands, so the app
# stays a group and parses the command name as usual.
FAST_PATH = {
    "validate": ("check",),
    "check": ("check",),
    "plan": ("check", "plan"),
    "apply": ("check", "apply"),
}


def _register(names: tuple[str, ...] = COMMAND_MODULES) -> None:
    for name in names:
        module = importlib.import_module(f"mailplat.cli.{name}")
        module.register(app)


def main() -> None:
    """Entry point of the `mailplat` console script."""
    from mailplat.cli.help import build

    command = sys.argv[1] if len(sys.argv) > 1 else ""
    _register(FAST_PATH.get(command, COMMAND_MODULES))
    build(app)(prog_name="mailplat")
