"""One reconcile pass for a running server: load, check, plan, apply, all or nothing.

Input: the site folder, the data root, a LoadCache (so only changed postoffice
files are parsed again) and who asked. Output: a Reconciled (the new config,
its Directory, the plan and the apply result), or ConfigRefused carrying
every diagnostic. Nothing here touches the running server: the caller swaps
the result in only when this returned, so a broken change never reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailplat.config.change import load_change
from mailplat.config.diagnostics import Diagnostic
from mailplat.config.directory import Directory
from mailplat.config.load import LoadCache, SiteConfig
from mailplat.core.errors import ConfigError, MailplatError
from mailplat.reconcile.apply import ApplyResult, apply
from mailplat.reconcile.diff import Plan, diff
from mailplat.reconcile.expect import run_expectations
from mailplat.reconcile.state import Generation, read_generation, read_generation_head


class ConfigRefused(MailplatError):
    """The change was not applied; `errors` holds every diagnostic as text."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors


@dataclass(frozen=True)
class Reconciled:
    config: SiteConfig
    directory: Directory
    plan: Plan
    result: ApplyResult
    parsed_files: int
    # True when the Directory was derived from the served one and only what
    # the change can break was checked (config.change); False: built and checked whole.
    incremental: bool = False


def reconcile(
    site_dir: Path,
    data_root: Path,
    cache: LoadCache,
    by: str,
    previous: Generation | None = None,
    served: Directory | None = None,
) -> Reconciled:
    """Load and apply site_dir; raise ConfigRefused (and change nothing) when it is broken.

    `previous` is the generation (with its snapshot) the caller applied last;
    when the data root still holds it, its snapshot is not read from disk again.
    `served` is the Directory the server runs: the new one is derived from it
    and only what the change can break is checked (config.change).
    """
    try:
        config, directory = load_change(site_dir, cache, served)
    except ConfigError as exc:
        errors = [str(d) for d in exc.diagnostics if not _is_warning(d)]
        raise ConfigRefused(f"{len(errors)} error(s) in the configuration", errors) from exc
    report = run_expectations(config, directory)
    if not report.ok:
        errors = [str(d) for d in report.diagnostics if not _is_warning(d)]
        raise ConfigRefused("an expect.yaml case fails", errors)
    head = read_generation_head(data_root)
    if previous is not None and head is not None and head.digest == previous.digest:
        applied: Generation | None = previous
    else:
        applied = read_generation(data_root)
    plan = diff(
        applied.snapshot if applied else None,
        config,
        old_digest=applied.digest if applied else None,
        new_directory=directory,
        routing_changes=False,
        applied=applied,
    )
    result = apply(config, plan, data_root, by=by, changed_only=True, applied=applied)
    return Reconciled(config, directory, plan, result, cache.parsed, directory.derived)


def _is_warning(diag: object) -> bool:
    return isinstance(diag, Diagnostic) and not diag.is_error
