"""Started as root, `mailplat serve` binds its ports, hands the data root over and drops root.

A real server process runs with `server.user: nobody`. After its listeners
are bound, /proc/<pid>/status must show every uid and gid as nobody's, the
data root must belong to nobody (a Maildir an offline apply made as root
included), and mail must still flow: SMTP in, Maildir file owned by nobody.
A data root nobody cannot reach is refused in one line.
"""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.serveproc import serve, site_with_ports, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user may enter (pytest's tmp_path is root-only 0700)."""
    path = Path(tempfile.mkdtemp(prefix="mailplat-drop-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _ids(pid: int) -> tuple[list[int], list[int]]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return [int(x) for x in fields["Uid"].split()], [int(x) for x in fields["Gid"].split()]


def test_serve_drops_to_the_configured_user_and_mail_still_flows(open_dir: Path) -> None:
    site, ports = site_with_ports(open_dir, site={"server": {"user": "nobody"}})
    for path in open_dir.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    data = open_dir / "data"
    # An offline apply as root makes root-owned Maildirs; the server must still
    # deliver into them after dropping root.
    applied = subprocess.run(
        [sys.executable, "-m", "mailplat", "apply", str(site), "--data", str(data), "--yes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stderr
    alice = data / "postoffices" / "example" / "alice"
    assert alice.stat().st_uid == 0

    with serve(site, data, ports["smtp"]) as proc:
        uids, gids = _ids(proc.pid)  # real, effective, saved, filesystem
        assert uids == [NOBODY.pw_uid] * 4
        assert gids == [NOBODY.pw_gid] * 4
        assert (data / "state" / "control.sock").stat().st_uid == NOBODY.pw_uid
        assert alice.stat().st_uid == NOBODY.pw_uid
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
            s.sendmail("x@remote.test", ["alice@example.test"], b"Subject: dropped\r\n\r\nhi\r\n")
        wait_until(lambda: list((alice / "new").glob("*")), what="delivery into alice")
        delivered = next((alice / "new").glob("*"))
        assert delivered.stat().st_uid == NOBODY.pw_uid
        assert b"Subject: dropped" in delivered.read_bytes()
    log = (data.parent / f"serve-{ports['smtp']}.log").read_text()
    assert f"privileges dropped user=nobody uid={NOBODY.pw_uid}" in log
    assert "Traceback" not in log


def test_data_root_the_user_cannot_reach_is_one_line(tmp_path: Path) -> None:
    # tmp_path's parents are root-only, so nobody cannot enter the data root.
    site, _ = site_with_ports(tmp_path, site={"server": {"user": "nobody"}})
    res = subprocess.run(
        [sys.executable, "-m", "mailplat", "serve", str(site), "--data", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert f"data root {tmp_path / 'd'} is not usable by user nobody" in errors[0]
    assert "chown -R nobody" in errors[0]


def test_reload_after_dropping_root_keeps_a_root_only_key(open_dir: Path) -> None:
    """A key only root may read (as `tls self-signed` writes it) must not block every reload."""
    site, ports = site_with_ports(open_dir, site={"server": {"user": "nobody"}})
    for path in open_dir.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (open_dir / "tls" / "key.pem").chmod(0o600)  # root's alone, as made
    data = open_dir / "data"
    with serve(site, data, ports["smtp"]):
        text = (site / "site.yaml").read_text()
        (site / "site.yaml").write_text(text + "smtp:\n  max_hops: 40\n")
        # The certificate was renewed too (as by certbot): the reload wants to reload it.
        cert = open_dir / "tls" / "cert.pem"
        cert.write_bytes(cert.read_bytes())
        res = subprocess.run(
            [sys.executable, "-m", "mailplat", "apply", str(site), "--data", str(data), "--yes"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        # Applied (not refused), with the reason the certificate could not be renewed.
        assert res.returncode == 0, res.stdout + res.stderr
        assert "Live: generation" in res.stdout
        assert "not renewed (the old one stays)" in res.stderr
        assert "not readable by user nobody" in res.stderr
        # STARTTLS still works with the certificate loaded at the start.
        ctx = __import__("ssl").create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, __import__("ssl").CERT_NONE
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
            s.starttls(context=ctx)
            assert s.noop()[0] == 250


def test_reload_after_dropping_root_keeps_a_root_only_dkim_key(open_dir: Path) -> None:
    """`dkim keygen` run as root makes 0600 root files: read at start, kept by a reload."""
    from tests.support import base_postoffice  # noqa: PLC0415

    po = base_postoffice()
    po["domains"]["example.test"]["dkim"] = {}
    site, ports = site_with_ports(
        open_dir, site={"server": {"user": "nobody"}}, postoffices={"example": po}
    )
    made = subprocess.run(
        [sys.executable, "-m", "mailplat", "dkim", "keygen", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    keys = sorted((site / "dkim").glob("*.pem"))
    assert keys and all(k.stat().st_mode & 0o777 == 0o600 for k in keys)
    for path in open_dir.rglob("*"):
        if path not in keys:
            path.chmod(0o755 if path.is_dir() else 0o644)
    data = open_dir / "data"
    with serve(site, data, ports["smtp"]):
        text = (site / "site.yaml").read_text()
        (site / "site.yaml").write_text(text + "smtp:\n  max_hops: 40\n")
        res = subprocess.run(
            [sys.executable, "-m", "mailplat", "apply", str(site), "--data", str(data), "--yes"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert "Live: generation" in res.stdout
        assert "no longer readable by this process" in res.stderr
    log = (data.parent / f"serve-{ports['smtp']}.log").read_text()
    assert "reload dkim-kept" in log
    assert "Traceback" not in log
