"""Peers the benchmarks compare against, each started privately on a loopback high port.

- `postfix`: Postfix accepting mail for a virtual domain into Maildir (config,
  queue, Maildirs and log under /var/tmp/mailplat-bench/postfix).
- `dovecot`: Dovecot serving POP3 from Maildirs (its own base_dir, passwd-file).
- `sink`: Postfix's smtp-sink, which accepts and discards: the floor.

Each module installs its package with apt-get when it is absent (as root only),
never touches port 25, /etc/postfix/main.cf or /etc/dovecot, and has a `stop()`
registered with `bench.util.REGISTRY` so it is stopped even on failure.
Run one by hand: `python -m bench.peers.postfix start|stop`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess

from bench.util import run


class PeerUnavailable(RuntimeError):
    """The peer is not installed and cannot be installed here (not root, no apt-get)."""


def apt_install(packages: list[str], debconf: str | None = None) -> None:
    """Install Debian packages without starting their services; PeerUnavailable when impossible."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PeerUnavailable(f"{' '.join(packages)} missing and cannot apt-get (need root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if debconf:
        subprocess.run(["debconf-set-selections"], input=debconf, text=True, check=False)
    res = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if res.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, check=False)
        res = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if res.returncode != 0:
        raise PeerUnavailable(f"apt-get install {' '.join(packages)} failed: {res.stderr[-500:]}")


def vmail_ids() -> tuple[int, int]:
    """uid and gid of the `vmail` user that owns peer Maildirs (created, uid 5000, if absent)."""
    try:
        pw = pwd.getpwnam("vmail")
    except KeyError:
        if os.geteuid() != 0:
            raise PeerUnavailable("no vmail user and not root to create it") from None
        run(
            [
                "useradd",
                "--system",
                "--uid",
                "5000",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "vmail",
            ],
            check=False,
        )
        pw = pwd.getpwnam("vmail")
    return pw.pw_uid, pw.pw_gid


def chown_tree(path: os.PathLike[str] | str, uid: int, gid: int) -> None:
    """chown -R."""
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid)
