"""`mailplat serve SITE [--watch]`: run the mail server for a site until Ctrl-C or SIGTERM.

SIGHUP reloads the site from disk; --watch reloads on every save (bursts of
saves are debounced into one reload). A broken change is logged with every
error and the server keeps serving the config it had.

The "try it" hints after start name a mailbox the site has; a password is
shown only when that mailbox still has the example site's `<name>-secret`.
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
from rich.markup import escape

from mailplat.auth.passwords import verify_password
from mailplat.cli.console import DataOpt, SiteArg, SiteOpt, error_lines, handle, out, site_of
from mailplat.config.directory import Directory, MailboxEntry
from mailplat.config.load import LoadCache, SiteConfig, data_root, load_site
from mailplat.core.errors import MailplatError
from mailplat.runtime import logging as runtime_logging
from mailplat.runtime.listeners import check_tls
from mailplat.runtime.server import (
    RunAs,
    Server,
    StartError,
    check_keys,
    prepare_data_root,
    run_as,
)

log = logging.getLogger("mailplat.server")


def serve(
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    data: DataOpt = None,
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
    try:
        _start(config, root, watch, cache)
    except MailplatError as exc:
        # One line naming the problem and the fix; never a traceback (exit 1).
        handle(exc)


def _start(config: SiteConfig, root: Path, watch: bool, cache: LoadCache) -> None:
    tls_errors = check_tls(config.site, config.root)
    if tls_errors:
        raise StartError(
            f"cannot start: {'; '.join(tls_errors)}. Certificates are files on this host, not "
            f"in git: create them with `mailplat tls self-signed {config.root / 'tls'}` or "
            "point tls.cert/tls.key in site.yaml at your certificate"
        )
    check_keys(config)  # a declared DKIM key missing on this host: one line, exit 1
    account = run_as(config.site.server)
    logs = config.site.logging
    log_dir = root / logs.directory
    try:
        runtime_logging.setup(
            log_dir,
            debug=logs.debug,
            json_file=logs.json_lines,
            w3c=logs.w3c,
            activity=logs.activity,
            rollover=logs.rollover,
        )
    except OSError as exc:
        raise StartError(
            f"cannot use data root {root}: {exc.strerror or exc} ({exc.filename or log_dir}); "
            "pick a folder this user can write with --data, MAILPLAT_DATA or server.data_root"
        ) from exc
    try:
        # As root with server.user: the tree (logs included) goes to that user now,
        # before the server binds and drops root.
        prepare_data_root(root, account, log_dir)
        runner = _runner(os.environ.get("MAILPLAT_LOOP", "auto"))
        runner(_serve(config, root, watch, cache, account))
    except MailplatError as exc:
        # The logs say why this start ended, not only stderr: otherwise they end
        # on `listening smtp` and read like a server that is up.
        log.error("start failed: %s", exc)
        raise


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
        if result["ok"]:
            out.print(f"[green]applied[/] generation {result['generation']} in {result['ms']} ms")
            problems = list(result.get("listener_errors", []))
            if problems:
                out.print("[yellow]listeners unchanged[/]:")
        else:
            out.print("[red]change refused[/]: ", end="")
            out.print(f"{result['error']} (still serving the old config)", markup=False)
            problems = list(result.get("errors", []))
        for line in error_lines(problems):
            out.print(line, markup=False, highlight=False)
        out.file.flush()  # whole lines, before the next log line on stderr


async def _serve(
    config: SiteConfig, root: Path, watch: bool, cache: LoadCache, account: RunAs | None
) -> None:
    server = Server(config, root, load_cache=cache, run_as=account)
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
    await server.start()  # cleans up after itself when it raises
    if watch:
        task = loop.create_task(_watch(server, config.root))
        background.add(task)
    out.print(
        f"[bold green]mailplat[/] serving site [bold]{escape(config.name)}[/] "
        f"(data in {escape(str(root))})"
    )
    for b in server.bound():
        out.print(f"  {b.kind:<11} {b.host}:{b.port}")
    for line in await asyncio.to_thread(_hints, server):
        out.print(line, highlight=False, markup=False)
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


_ROLES = frozenset({"postmaster", "abuse", "hostmaster", "webmaster", "mailer-daemon"})


def _sample_mailbox(directory: Directory) -> MailboxEntry | None:
    """A mailbox for the hints: it takes mail and logins; a person's before a role's or an admin's."""
    usable = [
        m
        for m in directory.mailboxes.values()
        if m.addresses and not m.model.disabled and not m.model.logon_disabled
    ]
    people = [m for m in usable if m.model.type == "user" and m.name.lower() not in _ROLES]
    return next(iter(people or usable), None)


def _hints(server: Server) -> list[str]:
    """How to try the server just started, with a mailbox this site really has."""
    mailbox = _sample_mailbox(server.directory)
    if mailbox is None:
        return []
    smtp = next((b for b in server.bound() if b.kind == "smtp"), None)
    pop3 = next((b for b in server.bound() if b.kind == "pop3"), None)
    lines = []
    if smtp:
        lines.append(
            f"Send a test mail:  swaks --server {smtp.host}:{smtp.port} "
            f"--to {mailbox.primary} --from someone@elsewhere.test"
        )
    if pop3:
        # The example site's passwords are public (README); any other stays unsaid.
        example = f"{mailbox.name}-secret"
        password = (
            f"password {example}"
            if verify_password(mailbox.model.password, example)
            else "its password"
        )
        lines.append(
            f"Read it by POP3:   login {mailbox.name}@{mailbox.postoffice}, {password}, "
            f"{pop3.host}:{pop3.port}"
        )
    return lines


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
