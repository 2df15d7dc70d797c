"""Diagnostics: what is wrong with a config, where, and how to fix it.

A Diagnostic is data (Terraform's tfdiags shape): severity, summary, detail,
hint and a source location. Nothing here renders or prints; the CLI does.
Locations start as a path into a YAML document and get their line and column
filled in by the loader only when there is something to report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

PathPart = str | int
Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Location:
    """A file and a path inside its document; line/col are 1-based (0 = unknown)."""

    file: str
    path: tuple[PathPart, ...] = ()
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in the config."""

    severity: Severity
    summary: str
    location: Location | None = None
    detail: str = ""
    hint: str = ""
    # Which rule produced it (e.g. "no-postmaster"): output groups repeats by it.
    code: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def located(self, line: int, col: int) -> Diagnostic:
        """The same diagnostic with a line and column."""
        assert self.location is not None
        return replace(self, location=replace(self.location, line=line, col=col))

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.severity}: {self.summary}"
        if self.detail:
            text += f" ({self.detail})"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_json(self) -> dict[str, object]:
        loc = self.location
        return {
            "severity": self.severity,
            "summary": self.summary,
            "detail": self.detail,
            "hint": self.hint,
            "code": self.code,
            "file": loc.file if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
            "path": list(loc.path) if loc else [],
        }


def error(file: str, path: tuple[PathPart, ...], summary: str, hint: str = "") -> Diagnostic:
    """Shorthand for an error at a path of a file."""
    return Diagnostic("error", summary, Location(file, path), hint=hint)


def warning(
    file: str, path: tuple[PathPart, ...], summary: str, hint: str = "", code: str = ""
) -> Diagnostic:
    """Shorthand for a warning at a path of a file; `code` names the rule."""
    return Diagnostic("warning", summary, Location(file, path), hint=hint, code=code)


def has_errors(diags: list[Diagnostic]) -> bool:
    return any(d.is_error for d in diags)
