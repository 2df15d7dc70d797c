"""`mailplat tls`: TLS helpers (a self-signed certificate for tests and `make run`).

`tls self-signed DIR` writes DIR/cert.pem and DIR/key.pem. An existing pair
is never replaced by surprise: without `--force` (replace it) or
`--if-missing` (keep it) the command refuses. A DIR that is a file or cannot
be written, or a --host that is neither a host name nor an IP, is one
`error:` line and exit 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailplat.cli.console import fail, handle, out
from mailplat.core.errors import MailplatError
from mailplat.runtime.tls import check_host, make_self_signed

tls_app = typer.Typer(help="TLS certificates.", no_args_is_help=True)

PAIR = ("cert.pem", "key.pem")


@tls_app.command("self-signed")
def self_signed(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to write cert.pem and key.pem into.")
    ],
    host: Annotated[
        str, typer.Option(help="Host name or IP address the certificate is for.")
    ] = "localhost",
    if_missing: Annotated[
        bool,
        typer.Option("--if-missing", help="Keep an existing cert.pem and key.pem; do nothing."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing cert.pem and key.pem.")
    ] = False,
) -> None:
    """Make a self-signed certificate (ECDSA P-256) for HOST, localhost and 127.0.0.1."""
    if if_missing and force:
        fail("--if-missing keeps an existing certificate and --force replaces it: choose one")
    try:
        check_host(host)
    except MailplatError as exc:
        handle(exc)
    if directory.exists() and not directory.is_dir():
        fail(f"{directory} is not a folder: name the folder for cert.pem and key.pem")
    present = [name for name in PAIR if (directory / name).exists()]
    if present and not force:
        if if_missing and len(present) == len(PAIR):
            out.print(f"certificate exists: {directory / 'cert.pem'}")
            return
        # Half a pair is kept too: the lone key may be the one a CA signed.
        if len(present) == len(PAIR):
            fail(
                f"{directory / 'cert.pem'} and key.pem already exist: --force replaces them, "
                "--if-missing keeps them"
            )
        fail(f"{directory / present[0]} already exists: --force replaces it")
    try:
        cert, key = make_self_signed(directory, host)
    except MailplatError as exc:
        handle(exc)
    except OSError as exc:
        where = exc.filename or directory
        fail(f"cannot write the certificate into {directory}: {exc.strerror or exc} ({where})")
    out.print(f"wrote {cert} and {key} (self-signed for {host})")


def register(app: typer.Typer) -> None:
    app.add_typer(tls_app, name="tls")
