"""schemas/ and the README config reference match the models; every site YAML names its schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailplat.config.load import SCHEMA_LINE
from mailplat.config.schema import REF_END, REF_START, reference_markdown, schema_texts

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("name", sorted(schema_texts()))
def test_schema_file_is_fresh(name: str) -> None:
    path = ROOT / "schemas" / name
    assert path.exists(), "run `mailplat schema`"
    assert path.read_text("utf-8") == schema_texts()[name], "stale: run `mailplat schema`"


def test_readme_reference_is_fresh() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index(REF_START) + len(REF_START) : readme.index(REF_END)]
    assert section.strip() == reference_markdown().strip(), "stale: run `mailplat schema`"


def test_reference_covers_every_key() -> None:
    md = reference_markdown()
    for key in ("local_domain", "privileged_ips", "quota_mb", "keep_copy", "lands", "from"):
        assert f"| `{key}` |" in md
    assert "| `retry_minutes` | list[integer] (at least 1) | `[15, 30, 60, 240]` |" in md


def _kind(path: Path) -> str:
    if path.name == "site.yaml":
        return "site"
    if path.name == "expect.yaml":
        return "expect"
    return "postoffice"


SITE_FILES = sorted((ROOT / "sites").rglob("*.yaml"))


@pytest.mark.parametrize("path", SITE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_site_yaml_starts_with_its_schema_line(path: Path) -> None:
    first = path.read_text("utf-8").splitlines()[0]
    assert first.startswith(SCHEMA_LINE)
    target = (path.parent / first[len(SCHEMA_LINE) :]).resolve()
    assert target == ROOT / "schemas" / f"{_kind(path)}.schema.json"
    assert json.loads(target.read_text())["$schema"].startswith("https://json-schema.org/")


def test_there_are_site_files() -> None:
    assert len(SITE_FILES) >= 4
