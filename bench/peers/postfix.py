"""A private Postfix: virtual domain `bench.test` into Maildir, on 127.0.0.1:<port>.

Everything lives under /var/tmp/mailplat-bench/postfix (`etc/` with main.cf and
master.cf, `queue/`, `data/`, `mail/<user>/` Maildirs, `maillog`), started with
`postfix -c <etc> start` as root. Defaults are Postfix's own, so its durability
is the stock one: cleanup fsyncs the queue file before the 250 and virtual
fsyncs the Maildir file before it counts as delivered (two fsyncs and one
rename per message, counted with strace). DNS lookups are off; the smtpd
listens on loopback only; no system file is touched. The bench gives each run
its own `root` (under its scratch dir), so two runs on one machine never share
or stop each other's Postfix.

`deliver=False` is Postfix ACCEPT-ONLY: master.cf has no qmgr, so every
accepted message stays in the incoming queue (fsynced, as always) and nothing
is delivered: the peer of mailplat's `delivery.hold: true`. It also sets
`in_flow_delay = 0s`: smtpd waits for a token qmgr hands out per message it
takes (1 s without one), so without qmgr every message would stall a second.

By hand: `python -m bench.peers.postfix start [port]`, `... stop`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.peers import PeerUnavailable, apt_install, chown_tree, vmail_ids
from bench.util import BENCH_ROOT, REGISTRY, remove_tree, run, wait_port

POSTFIX = "/usr/sbin/postfix"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"


def ensure_installed() -> None:
    """apt-get install postfix (no configuration, no daemon) when it is absent."""
    if all(os.access(p, os.X_OK) for p in (POSTFIX, SMTP_SOURCE, SMTP_SINK)):
        return
    apt_install(
        ["postfix"],
        debconf="postfix postfix/main_mailer_type select No configuration\n",
    )


def version() -> str:
    """Postfix's mail_version, or '' when it is not installed."""
    if not os.access(POSTFIX, os.X_OK):
        return ""
    res = run(["/usr/sbin/postconf", "-d", "-h", "mail_version"], check=False)
    return res.stdout.strip()


MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{port} inet n - n - {smtpd_limit} smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
{qmgr}rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

QMGR_LINE = "qmgr      unix  n       -       n       300     1       qmgr\n"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {root}/maillog
myhostname = peer.{domain}
myorigin = peer.{domain}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
smtpd_banner = $myhostname ESMTP
disable_dns_lookups = yes
smtp_host_lookup = native
smtpd_peername_lookup = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
default_process_limit = {process_limit}
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 100
virtual_mailbox_limit = 0
message_size_limit = 104857600
"""


@dataclass
class PostfixPeer:
    """One private Postfix instance; `start()` registers its `stop()` with the REGISTRY."""

    port: int
    users: list[str] = field(default_factory=lambda: ["u"])
    domain: str = "bench.test"
    smtpd_limit: int = 100
    root: Path = BENCH_ROOT / "postfix"
    deliver: bool = True  # False: no qmgr, mail stays in the incoming queue (accept-only)
    # False: no Maildirs made in advance (virtual makes one at the first delivery); for
    # 100,000 users that only answer RCPT it saves creating and removing 300,000 dirs.
    maildirs: bool = True
    # Extra main.cf lines and a transport map (domain -> transport), for tests that
    # need Postfix to relay somewhere or bounce (`error:` transport).
    extra_main_cf: str = ""
    transport: dict[str, str] = field(default_factory=dict)

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    def maildir(self, user: str) -> Path:
        return self.root / "mail" / user

    def _postfix(self, *args: str, check: bool = True) -> None:
        run([POSTFIX, "-c", str(self.etc), *args], check=check, timeout=120)

    def master_pid(self) -> int | None:
        try:
            pid = int((self.root / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def _kill_stale(self) -> None:
        """A previous run that died hard may have left its master running: stop it."""
        if self.etc.is_dir() and self.master_pid() is not None:
            self._postfix("abort", check=False)
            pid = self.master_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def start(self) -> None:
        if os.geteuid() != 0:
            raise PeerUnavailable("a private Postfix needs root here")
        ensure_installed()
        uid, gid = vmail_ids()
        self._kill_stale()
        shutil.rmtree(self.root, ignore_errors=True)
        for sub in ("etc", "queue", "data", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix", "postfix")
        (self.etc / "main.cf").write_text(
            MAIN_CF.format(
                root=self.root,
                domain=self.domain,
                uid=uid,
                gid=gid,
                process_limit=max(100, self.smtpd_limit),
            )
        )
        if self.transport:
            (self.etc / "transport").write_text(
                "".join(f"{dom} {how}\n" for dom, how in self.transport.items())
            )
            with (self.etc / "main.cf").open("a") as fh:
                fh.write(f"transport_maps = texthash:{self.etc}/transport\n")
        if not self.deliver:
            with (self.etc / "main.cf").open("a") as fh:
                fh.write("in_flow_delay = 0s\n")
        if self.extra_main_cf:
            with (self.etc / "main.cf").open("a") as fh:
                fh.write(self.extra_main_cf.rstrip("\n") + "\n")
        (self.etc / "master.cf").write_text(
            MASTER_CF.format(
                port=self.port,
                smtpd_limit=self.smtpd_limit,
                qmgr=QMGR_LINE if self.deliver else "",
            )
        )
        (self.etc / "vmailbox").write_text("".join(f"{u}@{self.domain} {u}/\n" for u in self.users))
        for user in self.users if self.maildirs else []:
            for sub in ("new", "cur", "tmp"):
                (self.maildir(user) / sub).mkdir(parents=True, exist_ok=True)
        chown_tree(self.root / "mail", uid, gid)
        REGISTRY.add_stop("postfix", self.stop)
        self._postfix("check")
        self._postfix("start")
        if not self.deliver:
            self._stand_in_qmgr_fifo()
        wait_port(self.port, 30)
        pid = self.master_pid()
        if pid is not None:
            REGISTRY.note_server("postfix", pid)

    def _stand_in_qmgr_fifo(self) -> None:
        """public/qmgr as a FIFO nobody reads, as qmgr's own would be.

        cleanup wakes qmgr through it after each message; with no qmgr in
        master.cf the name is missing and cleanup logs a warning per message
        (a cost only this setup would pay). A FIFO without a reader makes the
        wake-up fail quietly, the way it does while a real qmgr restarts.
        """
        fifo = self.root / "queue" / "public" / "qmgr"
        if not fifo.exists():
            os.mkfifo(fifo, 0o622)
            shutil.chown(fifo, "postfix", "postdrop")

    def stop(self) -> None:
        if not self.etc.is_dir():
            return
        self._postfix("stop", check=False)
        end = time.monotonic() + 15
        while self.master_pid() is not None and time.monotonic() < end:
            time.sleep(0.1)
        if self.master_pid() is not None:
            self._postfix("abort", check=False)
        # Keep etc/ and maillog for a post-mortem; drop the bulky queue and mail.
        for sub in ("queue", "mail"):
            remove_tree(self.root / sub)

    def clear_mail(self) -> None:
        """Empty every Maildir's new/ and cur/ between scenarios."""
        for user in self.users:
            for sub in ("new", "cur"):
                d = self.maildir(user) / sub
                with os.scandir(d) as it:
                    for entry in it:
                        os.unlink(entry.path)

    def queued(self) -> int:
        """Messages in the incoming queue (where accept-only Postfix keeps them)."""
        return sum(len(files) for _d, _s, files in os.walk(self.root / "queue" / "incoming"))

    def queue_empty(self) -> bool:
        """True when no message is left in the incoming/active/deferred queues."""
        for sub in ("incoming", "active", "deferred", "maildrop"):
            d = self.root / "queue" / sub
            for _dirpath, _dirs, files in os.walk(d):
                if files:
                    return False
        return True


def main(argv: list[str]) -> int:
    """`python -m bench.peers.postfix start [port] | stop`."""
    cmd = argv[0] if argv else "start"
    peer = PostfixPeer(port=int(argv[1]) if len(argv) > 1 else 3525)
    if cmd == "start":
        peer.start()
        REGISTRY.forget("postfix")  # started by hand: leave it running
        print(f"postfix listening on 127.0.0.1:{peer.port}; config in {peer.etc}")
    elif cmd == "stop":
        peer.stop()
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
