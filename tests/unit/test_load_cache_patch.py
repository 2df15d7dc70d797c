"""A cached reload gives what a fresh load gives, whatever was edited in between.

The LoadCache keeps the last load's tables and patches in only the files
whose (mtime, size) moved. After any sequence of edits (a file changed,
broken, fixed, added or removed), loading through the cache must equal a
load from scratch: the same postoffices, digest, files and diagnostics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailplat.config.load import LoadCache, load_site
from mailplat.core.errors import ConfigError

NAMES = ["a", "b", "c", "d"]
TEXTS = [
    "domains:\n  {n}.test: {{postmaster: pm}}\nmailboxes:\n  pm: {{}}\n",
    "domains:\n  {n}.test: {{postmaster: pm}}\nmailboxes:\n  pm: {{}}\n  x: {{quota_mb: 5}}\n",
    "domains:\n  {n}.test: {{}}\nmailboxes:\n  pm: {{quota_mb: ten}}\n",  # a field error
    "domains: [broken\n",  # a syntax error
    "domains:\n  a.test: {{}}\nmailboxes:\n  postmaster: {{}}\n",  # a.test may be someone's
]


def outcome(site: Path, cache: LoadCache | None) -> tuple[str, Any]:
    try:
        config = load_site(site, cache)
    except ConfigError as exc:
        return "error", [str(d) for d in exc.diagnostics]
    return "ok", (
        config.digest,
        config.postoffices,
        config.files,
        [str(w) for w in config.warnings],
    )


@settings(max_examples=80, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(NAMES), st.integers(-1, len(TEXTS) - 1)), min_size=1, max_size=8
    )
)
def test_cached_loads_equal_fresh_loads(
    tmp_path_factory: pytest.TempPathFactory, edits: Any
) -> None:
    site = tmp_path_factory.mktemp("site")
    (site / "site.yaml").write_text("server:\n  local_domain: t.test\n")
    pos = site / "postoffices"
    pos.mkdir()
    for n in NAMES[:2]:
        (pos / f"{n}.yaml").write_text(TEXTS[0].format(n=n))
    cache = LoadCache()
    tick = 10**9
    assert outcome(site, cache) == outcome(site, None)
    for name, which in edits:
        path = pos / f"{name}.yaml"
        if which < 0:
            path.unlink(missing_ok=True)
        else:
            path.write_text(TEXTS[which].format(n=name))
            tick += 10**9  # a clearly later mtime: a stamp of (mtime, size) must move
            os.utime(path, ns=(tick, tick))
        assert outcome(site, cache) == outcome(site, None)
