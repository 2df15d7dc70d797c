"""The trust commands in-process (typer's CliRunner over the real command functions)."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
from typer.testing import CliRunner, Result

COMMANDS = ("check", "dkim", "dns", "serve")


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    for name in COMMANDS:
        importlib.import_module(f"mailplat.cli.{name}").register(app)
    return app


_APP = _app()


def run(*args: str | Path) -> Result:
    env = {"MAILPLAT_DATA": "", "COLUMNS": "300", "NO_COLOR": "1"}
    return CliRunner().invoke(_APP, [str(a) for a in args], env=env)
