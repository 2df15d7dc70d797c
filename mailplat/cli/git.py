"""`mailplat git install-hooks`: deploy a site by `git push` to a bare repository.

The pre-receive hook exports the pushed commit into a temporary folder and
validates the site there (YAML, cross-object rules, expect.yaml); any error
refuses the push, and every error is printed in the pusher's terminal. The
post-receive hook checks the commit out into the deploy folder (the one
`mailplat serve` serves) and runs `mailplat apply`, which hands it to the
running server through its control socket, printing the plan and result.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from mailplat.cli.console import SiteArg, SiteOpt, err, fail, ok, out, site_of
from mailplat.config.directory import Directory
from mailplat.config.load import load_site
from mailplat.core.errors import ConfigError
from mailplat.reconcile.expect import run_expectations

git_app = typer.Typer(help="Deploy by git push: hooks for a bare repository.", no_args_is_help=True)

ZERO = "0" * 40
# The hooks run inside the repository, so they name the site by its path in it.
RepoSiteOpt = Annotated[
    str, typer.Option("--site", help="Site folder inside the repository, e.g. sites/example.")
]
DataDirOpt = Annotated[
    Path, typer.Option("--data", metavar="DIR", help="Data root of the running server.")
]
BranchOpt = Annotated[str, typer.Option("--branch", help="The branch that deploys.")]
DeployOpt = Annotated[
    Path | None,
    typer.Option("--deploy", help="Checkout the server serves; default DATA/deploy."),
]

HOOK = """#!/bin/sh
# Installed by `mailplat git install-hooks`; re-run it to change the settings.
exec {python} -m mailplat git {stage} --site {site} --data {data} --branch {branch} --deploy {deploy}
"""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def repo_site(site: Path) -> str:
    """SITE as a path inside the repository: `sites/example` (a bare `example` means that too)."""
    if site.is_absolute():
        try:
            site = site.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            fail(
                f"{site} is outside the current directory: name the site by its path in the "
                "repository, e.g. sites/example (run this from the checkout's root)"
            )
    text = site.as_posix()
    if text in ("", ".") or ".." in site.parts:
        fail(f"{site} is not a site folder inside the repository; e.g. sites/example")
    return text if "/" in text else f"sites/{text}"


@git_app.command("install-hooks")
def install_hooks(
    bare_repo: Annotated[Path, typer.Argument(help="The bare repository admins push to.")],
    data: DataDirOpt,
    site: SiteArg = None,
    site_opt: SiteOpt = None,
    branch: BranchOpt = "main",
    deploy: DeployOpt = None,
) -> None:
    """Install pre-receive (validate) and post-receive (apply) hooks into BARE_REPO.

    SITE is the site's folder in the repository, as you name it from the
    checkout's root (sites/example); pushes are validated and applied there.
    """
    site_path = repo_site(site_of(site, site_opt))
    hooks = bare_repo / "hooks"
    if not (bare_repo / "HEAD").exists() or not hooks.is_dir():
        fail(f"{bare_repo} is not a bare git repository (create one with `git init --bare`)")
    data = data.resolve()
    deploy = (deploy or data / "deploy").resolve()
    for stage in ("pre-receive", "post-receive"):
        path = hooks / stage
        path.write_text(
            HOOK.format(
                python=_quote(sys.executable),
                stage=stage,
                site=_quote(site_path),
                data=_quote(str(data)),
                branch=_quote(branch),
                deploy=_quote(str(deploy)),
            )
        )
        path.chmod(0o755)
    ok(f"hooks installed in {hooks}: pushes to {branch} are validated, then applied")
    out.print(f"Serve the deployed site with: mailplat serve {deploy / site_path} --data {data}")


def _updates(branch: str) -> list[str]:
    """New commit ids pushed to the deploying branch (hooks read `old new ref` lines)."""
    wanted = f"refs/heads/{branch}"
    news = []
    for line in sys.stdin.read().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == wanted and parts[1] != ZERO:
            news.append(parts[1])
    return news


def _export(commit: str, into: Path) -> None:
    tar = subprocess.run(
        ["git", "archive", "--format=tar", commit], capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(into, filter="data")


@git_app.command("pre-receive", hidden=True)
def pre_receive(
    site: RepoSiteOpt, data: DataDirOpt, branch: BranchOpt = "main", deploy: DeployOpt = None
) -> None:
    """Refuse a push whose site does not validate (run by the hook)."""
    for commit in _updates(branch):
        with tempfile.TemporaryDirectory(prefix="mailplat-push-") as tmp:
            _export(commit, Path(tmp))
            site_dir = Path(tmp) / site
            errors: list[str] = []
            try:
                # Paths relative to the export are repository paths: what the pusher edits.
                config = load_site(site_dir, relative_to=Path(tmp))
                report = run_expectations(config, Directory(config))
                errors = [str(d) for d in report.diagnostics if getattr(d, "is_error", True)]
            except ConfigError as exc:
                errors = [str(d) for d in exc.diagnostics if getattr(d, "is_error", True)]
            if errors:
                err.print(f"[red]mailplat: push refused[/]: {site} in {commit[:12]} is invalid")
                for line in errors:
                    err.print(f"  {line}", highlight=False)
                raise typer.Exit(1)
            out.print(f"mailplat: {site} in {commit[:12]} is valid")


@git_app.command("post-receive", hidden=True)
def post_receive(
    site: RepoSiteOpt, data: DataDirOpt, branch: BranchOpt = "main", deploy: DeployOpt = None
) -> None:
    """Check the pushed commit out into the deploy folder and apply it (run by the hook)."""
    commits = _updates(branch)
    if not commits:
        return
    deploy = deploy or data / "deploy"
    deploy.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", f"--work-tree={deploy}", "checkout", "-f", commits[-1], "--", "."], check=True
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailplat",
            "apply",
            str(deploy / site),
            "--data",
            str(data),
            "--yes",
        ],
        check=False,
    )
    if result.returncode != 0:
        err.print("mailplat: apply failed; the server keeps the configuration it had")
        raise typer.Exit(result.returncode)


def register(app: typer.Typer) -> None:
    app.add_typer(git_app, name="git")
