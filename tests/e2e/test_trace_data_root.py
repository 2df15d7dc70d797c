"""`mailplat trace ID --data DIR`: a message's life from the data root alone, no site named.

A real `mailplat serve` writes its JSON log under DATA/logs (the default
logging.directory); trace then finds it from --data or MAILPLAT_DATA, prints
the same lines as with the site, and without either says what to give.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.serveproc import mailplat, serve, site_with_ports, wait_until
from tests.e2e.test_trace import _events, _send


def _trace(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "MAILPLAT_DATA"}
    return subprocess.run(
        [sys.executable, "-m", "mailplat", "trace", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


def test_trace_reads_the_log_under_the_data_root(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path, site={"logging": {"json": True}})
    data = tmp_path / "data"
    with serve(site, data, ports["smtp"]):
        msg_id = _send(ports["smtp"])
        wait_until(
            lambda: any(e.get("event") == "delivery ok" for e in _events(data)),
            what="the delivery logged",
        )
    with_site = mailplat("trace", str(site), msg_id, "--data", str(data))
    assert with_site.returncode == 0, with_site.stderr
    assert "smtp accepted" in with_site.stdout and "delivery ok" in with_site.stdout

    by_option = _trace(msg_id, "--data", str(data))
    assert by_option.returncode == 0, by_option.stderr
    assert by_option.stdout == with_site.stdout
    by_env = _trace(msg_id, env={"MAILPLAT_DATA": str(data)})
    assert by_env.returncode == 0 and by_env.stdout == with_site.stdout, by_env.stderr

    unknown = _trace("01ARZ3NDEKTSV4RRFFQ69G5FAV", "--data", str(data))
    assert unknown.returncode == 3 and "nothing logged for" in unknown.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_log = _trace(msg_id, "--data", str(empty))
    assert no_log.returncode == 1
    assert f"no mailplat.jsonl in {empty / 'logs'}" in no_log.stderr
    neither = _trace(msg_id)
    assert neither.returncode == 1 and "--data DIR" in neither.stderr
    assert "Traceback" not in no_log.stderr + neither.stderr + unknown.stderr


def test_trace_help_says_where_data_alone_reads() -> None:
    res = mailplat("trace", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "With --data DIR (or MAILPLAT_DATA) and no SITE, the log is read from DIR/logs" in text
