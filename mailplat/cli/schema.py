"""`mailplat schema`: write schemas/*.json and the README config reference from the models.

`--check` writes nothing and exits 1 when a file is stale (CI and a test use
it), 0 when everything is fresh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import mailplat
from mailplat.cli.console import EXIT_ERROR, err, ok, out
from mailplat.config.schema import reference_markdown, replace_reference, schema_texts


def default_root() -> Path:
    """The checkout holding this package (where schemas/ and README.md live)."""
    return Path(mailplat.__file__).resolve().parent.parent


def expected_files(root: Path) -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    files = {root / "schemas" / name: text for name, text in schema_texts().items()}
    readme = root / "README.md"
    current = readme.read_text("utf-8") if readme.exists() else ""
    files[readme] = replace_reference(current, reference_markdown())
    return files


def schema(
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if any file is stale.")
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(help="Checkout holding schemas/ and README.md; default: this one."),
    ] = None,
) -> None:
    """Generate schemas/site.schema.json, postoffice.schema.json, expect.schema.json and the
    README's config reference from the models.
    """
    base = root or default_root()
    try:
        files = expected_files(base)
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_ERROR) from exc
    stale = [p for p, text in files.items() if not p.exists() or p.read_text("utf-8") != text]
    if check:
        for p in stale:
            err.print(f"[red]stale:[/] {p} (run `mailplat schema`)", highlight=False)
        if stale:
            raise typer.Exit(EXIT_ERROR)
        ok("schemas and the config reference are fresh")
        return
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(files[p], "utf-8")
        out.print(f"wrote {p}", highlight=False)
    ok(f"{len(files)} generated file(s) fresh ({len(stale)} rewritten)")


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
