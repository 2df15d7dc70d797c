"""`mailplat serve SITE [--watch]`: run the mail server for a site until Ctrl-C or SIGTERM.

SIGHUP reloads the site from disk; --watch reloads on every save (bursts of
saves are debounced into one reload). A broken change is logged with every
error and the server keeps serving the config it had.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from mailplat.cli.console import SiteArg, SiteOpt, err, fail, handle, out, site_of
from mailplat.config.load import LoadCache, data_root, load_site
from mailplat.core.errors import MailplatError
from mailplat.runtime import logging as runtime_logging
from mailplat.runtime.listeners import check_tls
from mailplat.runtime.server import Server

log = logging.getLogger("mailplat.server")


def serve(
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Data root (queues, Maildirs, state); default from MAILPLAT_DATA or the site."
        ),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Apply every saved change to the site folder live.")
    ] = False,
) -> None:
    """Serve SITE: SMTP, submission, SMTPS, POP3 and POP3S as the site declares them.

    `mailplat apply SITE` and SIGHUP reconfigure the running server; with
    --watch a saved change is applied at once. Ctrl-C or SIGTERM stop it.
    """
    site = site_of(site, site_opt)
    try:
        cache = LoadCache()
        config = load_site(site, cache)
    except MailplatError as exc:
        handle(exc)
    root = data_root(config, data, os.environ.get("MAILPLAT_DATA"))
    tls_errors = check_tls(config.site, config.root)
    if tls_errors:
        for line in tls_errors:
            err.print(f"[red]error:[/] {line}", highlight=False)
        fail(
            "cannot start: certificates are files on this host, not in git; create them with "
            f"`mailplat tls self-signed {config.root / 'tls'}` or point tls.cert/tls.key "
            "in site.yaml at your certificate"
        )
    logs = config.site.logging
    runtime_logging.setup(
        root / logs.directory,
        debug=logs.debug,
        json_file=logs.json_lines,
        w3c=logs.w3c,
        activity=logs.activity,
        rollover=logs.rollover,
    )
    runner = _runner(os.environ.get("MAILPLAT_LOOP", "auto"))
    runner(_serve(config, root, watch, cache))


def _runner(choice: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop when installed (about a third less CPU per SMTP transaction), else asyncio.

    MAILPLAT_LOOP=asyncio forces the standard loop.
    """
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.run
    return asyncio.run


async def _watch(server: Server, site_dir: Path) -> None:
    """Reload after each burst of saves (watchfiles groups changes within its debounce)."""
    from watchfiles import awatch

    async for changes in awatch(site_dir, debounce=50, step=10, recursive=True):
        names = sorted({Path(p).name for _, p in changes})
        log.info("watch change files=%s", ",".join(names[:10]))
        result = await server.reload("watch")
        if not result["ok"]:
            out.print(f"[red]change refused[/]: {result['error']} (still serving the old config)")
            for line in result.get("errors", []):
                out.print(f"  {line}", highlight=False)
        else:
            out.print(f"[green]applied[/] generation {result['generation']} in {result['ms']} ms")


async def _serve(config: object, root: Path, watch: bool, cache: LoadCache) -> None:
    from mailplat.config.load import SiteConfig

    assert isinstance(config, SiteConfig)
    server = Server(config, root, load_cache=cache)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    background: set[asyncio.Task[Any]] = set()

    def on_hup() -> None:
        task = loop.create_task(server.reload("SIGHUP"))
        background.add(task)
        task.add_done_callback(background.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await server.start()
    if watch:
        task = loop.create_task(_watch(server, config.root))
        background.add(task)
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
    out.print(
        "Ctrl-C stops the server; `mailplat apply` or SIGHUP reloads it"
        + (", and saves are applied live (--watch)." if watch else ".")
    )
    try:
        await stop.wait()
    finally:
        out.print("stopping...")
        for task in background:
            task.cancel()
        await server.stop()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
