"""Two servers on one data root would recover each other's spool: the second refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailplat.config.load import load_site
from mailplat.control import lock
from mailplat.runtime.server import Server, StartError
from tests.support import running, write_site


async def test_a_second_server_on_the_same_data_root_refuses_to_start(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    data = tmp_path / "data"
    async with running(site, data) as first:
        assert lock.holder(data) is not None
        second = Server(load_site(site), data)
        with pytest.raises(StartError, match="another `mailplat serve`"):
            await second.start()
        # The first one still has its spool and its control socket.
        assert (data / "state" / "control.sock").exists()
        assert first.status()["ok"]
        # And the command line says it in one line, exit 1.
        res = subprocess.run(
            [sys.executable, "-m", "mailplat", "serve", str(site), "--data", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 1, res.stderr
        assert "another `mailplat serve`" in res.stderr and "Traceback" not in res.stderr
    assert lock.holder(data) is None  # released at the stop
