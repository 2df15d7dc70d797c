"""Fixtures for integration tests: a site on disk and a running server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailplat.runtime.server import Server
from tests.support import running, write_site


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    return write_site(tmp_path)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def server(site_dir: Path, data_root: Path) -> AsyncIterator[Server]:
    async with running(site_dir, data_root) as srv:
        yield srv
