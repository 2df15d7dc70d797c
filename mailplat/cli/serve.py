"""`mailplat serve SITE`: run the mail server for a site until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from mailplat.cli.console import handle, out
from mailplat.config.load import data_root, load_site
from mailplat.core.errors import MailplatError
from mailplat.runtime import logging as runtime_logging
from mailplat.runtime.server import Server


def serve(
    site: Annotated[Path, typer.Argument(help="Site folder, e.g. sites/example.")],
    data: Annotated[
        str | None,
        typer.Option(
            help="Data root (queues, Maildirs, state); default from MAILPLAT_DATA or the site."
        ),
    ] = None,
) -> None:
    """Serve SITE: SMTP, submission, SMTPS, POP3 and POP3S as the site declares them."""
    try:
        config = load_site(site)
    except MailplatError as exc:
        handle(exc)
    root = data_root(config, data, os.environ.get("MAILPLAT_DATA"))
    logs = config.site.logging
    runtime_logging.setup(root / logs.directory, debug=logs.debug, json_file=logs.json_lines)
    asyncio.run(_serve(config, root))


async def _serve(config: object, root: Path) -> None:
    from mailplat.config.load import SiteConfig

    assert isinstance(config, SiteConfig)
    server = Server(config, root)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    out.print(f"[bold green]mailplat[/] serving site [bold]{config.name}[/] (data in {root})")
    for b in server.bound():
        out.print(f"  {b.kind:<11} {b.host}:{b.port}")
    smtp = next((b for b in server.bound() if b.kind == "smtp"), None)
    pop3 = next((b for b in server.bound() if b.kind == "pop3"), None)
    if smtp:
        out.print(
            f"Send a test mail:  swaks --server {smtp.host}:{smtp.port} "
            f"--to alice@example.test --from someone@elsewhere.test"
        )
    if pop3:
        out.print(
            f"Read it by POP3:   mailbox alice, password alice-secret, {pop3.host}:{pop3.port}"
        )
    out.print("Ctrl-C stops the server.")
    try:
        await stop.wait()
    finally:
        out.print("stopping...")
        await server.stop()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
