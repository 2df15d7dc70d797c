"""`mailplat tls`: TLS helpers (a self-signed certificate for tests and `make run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailplat.cli.console import out
from mailplat.runtime.tls import make_self_signed

tls_app = typer.Typer(help="TLS certificates.", no_args_is_help=True)


@tls_app.command("self-signed")
def self_signed(
    directory: Annotated[Path, typer.Argument(help="Folder to write cert.pem and key.pem into.")],
    host: Annotated[str, typer.Option(help="Host name the certificate is for.")] = "localhost",
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when cert.pem already exists.")
    ] = False,
) -> None:
    """Make a self-signed certificate (ECDSA P-256) for HOST, localhost and 127.0.0.1."""
    if if_missing and (directory / "cert.pem").exists() and (directory / "key.pem").exists():
        out.print(f"certificate exists: {directory / 'cert.pem'}")
        return
    cert, key = make_self_signed(directory, host)
    out.print(f"wrote {cert} and {key} (self-signed for {host})")


def register(app: typer.Typer) -> None:
    app.add_typer(tls_app, name="tls")
