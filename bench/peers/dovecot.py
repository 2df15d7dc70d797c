"""A private Dovecot serving POP3 from Maildirs on 127.0.0.1:<port>, without TLS.

Everything lives under /var/tmp/mailplat-bench/dovecot: `dovecot.conf` (its own
base_dir and state_dir, so the system's /etc/dovecot and /run/dovecot are never
used), a `passwd` file with SHA512-CRYPT hashes, Maildirs in `mail/<user>/`
owned by the vmail user, and `dovecot.log`. Only the pop3 protocol is enabled.

By hand: `python -m bench.peers.dovecot start [port]`, `... stop`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.peers import PeerUnavailable, apt_install, chown_tree, vmail_ids
from bench.util import BENCH_ROOT, REGISTRY, run, wait_port

DOVECOT = "/usr/sbin/dovecot"

CONF = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = mailplat-bench
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = {root}/dovecot.log
mail_location = maildir:{root}/mail/%n
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 100
pop3_uidl_format = %08Xu%08Xv
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%n
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def ensure_installed() -> None:
    """apt-get install dovecot-core dovecot-pop3d when absent (the package starts no daemon)."""
    if os.access(DOVECOT, os.X_OK) and Path("/usr/lib/dovecot/pop3").exists():
        return
    apt_install(["dovecot-core", "dovecot-pop3d"])


def version() -> str:
    """`dovecot --version`, or '' when it is not installed."""
    if not os.access(DOVECOT, os.X_OK):
        return ""
    return run([DOVECOT, "--version"], check=False).stdout.strip()


@dataclass
class DovecotPeer:
    """One private Dovecot; users map login (`user@domain`) -> password hash."""

    port: int
    users: dict[str, str] = field(default_factory=dict)
    root: Path = BENCH_ROOT / "dovecot"

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    def maildir(self, login: str) -> Path:
        return self.root / "mail" / login.split("@", 1)[0]

    def master_pid(self) -> int | None:
        try:
            pid = int((self.root / "run" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def prepare(self) -> None:
        """Write config, passwd and empty Maildirs (fill them before start())."""
        if os.geteuid() != 0:
            raise PeerUnavailable("a private Dovecot needs root here")
        ensure_installed()
        self._kill_stale()
        uid, gid = vmail_ids()
        shutil.rmtree(self.root, ignore_errors=True)
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONF.format(root=self.root, uid=uid, gid=gid, port=self.port))
        (self.root / "passwd").write_text(
            "".join(f"{login}:{{SHA512-CRYPT}}{h}::::::\n" for login, h in self.users.items())
        )
        for login in self.users:
            for sub in ("new", "cur", "tmp"):
                (self.maildir(login) / sub).mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        uid, gid = vmail_ids()
        chown_tree(self.root / "mail", uid, gid)
        REGISTRY.add_stop("dovecot", self.stop)
        # The daemon keeps inherited pipes open: give it /dev/null, not a capture.
        res = subprocess.run(
            [DOVECOT, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        if res.returncode != 0:
            log = (
                (self.root / "dovecot.log").read_text()
                if (self.root / "dovecot.log").exists()
                else ""
            )
            raise RuntimeError(f"dovecot exited {res.returncode}: {log[-1000:]}")
        wait_port(self.port, 30)

    def _kill_stale(self) -> None:
        if self.conf.exists() and self.master_pid() is not None:
            run([DOVECOT, "-c", str(self.conf), "stop"], check=False)
            pid = self.master_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        if not self.conf.exists():
            return
        pid = self.master_pid()
        run([DOVECOT, "-c", str(self.conf), "stop"], check=False)
        end = time.monotonic() + 15
        while pid is not None and Path(f"/proc/{pid}").exists() and time.monotonic() < end:
            time.sleep(0.1)
        if pid is not None and Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root / "mail", ignore_errors=True)


def main(argv: list[str]) -> int:
    """`python -m bench.peers.dovecot start [port] | stop`."""
    from bench.pop3_load import password_hash

    cmd = argv[0] if argv else "start"
    peer = DovecotPeer(
        port=int(argv[1]) if len(argv) > 1 else 3110,
        users={"u1@bench.test": password_hash("bench-secret")},
    )
    if cmd == "start":
        peer.prepare()
        peer.start()
        REGISTRY.forget("dovecot")
        print(f"dovecot POP3 on 127.0.0.1:{peer.port} (u1@bench.test / bench-secret)")
    elif cmd == "stop":
        peer.stop()
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
