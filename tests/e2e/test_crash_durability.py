"""kill -9 under load: every message answered 250 ends up whole in a Maildir.

A real `mailplat serve` subprocess receives mail from several sender threads
(smtplib) while it is SIGKILLed and restarted several times. Senders record
the Message-ID of every message that got a 250. At the end every recorded
message is in alice's Maildir, byte-identical in body (hash compared), and
nothing partial was delivered. Duplicates are allowed (at-least-once) and
counted.
"""

from __future__ import annotations

import hashlib
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from email import message_from_bytes
from pathlib import Path

from tests.support import write_site


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(site: Path, data: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailplat", "serve", str(site), "--data", str(data)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError("server exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(100).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not come up")


def body_for(n: int, sender: int) -> bytes:
    return (f"message {n} from sender {sender}\r\n" * (1 + n % 40)).encode()


def test_kill9_under_load_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    site = write_site(
        tmp_path,
        site={
            "listeners": {
                "smtp": {"bind": [f"127.0.0.1:{port}"]},
                "submission": {"enabled": False},
                "smtps": {"enabled": False},
                "pop3": {"enabled": False},
                "pop3s": {"enabled": False},
            }
        },
        tls=False,
    )
    data = tmp_path / "data"
    log = tmp_path / "server.log"
    accepted: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def sender(idx: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            mid = f"<{idx}.{n}@load.test>"
            body = body_for(n, idx)
            msg = (
                f"From: s{idx}@remote.test\r\nTo: alice@example.test\r\nMessage-ID: {mid}\r\nSubject: n{n}\r\n\r\n".encode()
                + body
            )
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
                    s.sendmail(f"s{idx}@remote.test", ["alice@example.test"], msg)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)
                continue
            with lock:
                accepted[mid] = hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest()

    proc = start(site, data, log)
    wait_port(port, proc)
    threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(4):
            time.sleep(1.5)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = start(site, data, log)
            wait_port(port, proc)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(accepted) > 50, f"load generator too slow: {len(accepted)}"
    maildir = data / "postoffices" / "example" / "alice"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            files = [*(maildir / "new").glob("*"), *(maildir / "cur").glob("*")]
            if len(files) >= len(accepted):
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    delivered: dict[str, list[str]] = {}
    for f in [*(maildir / "new").glob("*"), *(maildir / "cur").glob("*")]:
        raw = f.read_bytes()
        msg = message_from_bytes(raw)
        mid = str(msg["Message-ID"])
        body = raw.split(b"\n\n", 1)[1]
        delivered.setdefault(mid, []).append(hashlib.sha256(body).hexdigest())
    missing = [m for m in accepted if m not in delivered]
    assert not missing, f"{len(missing)} accepted messages lost, e.g. {missing[:3]}; log: {log}"
    for mid, digest in accepted.items():
        assert all(d == digest for d in delivered[mid]), f"partial or altered message {mid}"
    duplicates = sum(len(v) - 1 for v in delivered.values())
    print(
        f"accepted={len(accepted)} delivered={sum(map(len, delivered.values()))} duplicates={duplicates}"
    )
    assert os.path.exists(data / "spool")
