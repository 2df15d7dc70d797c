"""Reload scenarios (issue 5): a one-line change on a big running site, and applies under load.

Scenario 7: a site of P postoffices x M mailboxes is served; one line changes
(a group's address), and we time from the save until the new address is
accepted at RCPT, through the control socket (`mailplat apply`'s path) and
through `serve --watch`. The peer does the same with Postfix: one line added to
its virtual mailbox map, `postfix reload`, until RCPT accepts.

Scenario 8: 10 concurrent senders; throughput without reloads, then while 20
applies happen (20 `postfix reload` on the peer). Reports failed transactions,
lost messages and the throughput dip.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import gen_site
from bench.mailplat_side import MailplatServer, mailplat_cmd, write_bench_site
from bench.pop3_load import password_hash
from bench.scenarios import Context, Record, mailplat_failed, postfix_peer
from bench.util import count_files, free_port, wait_until

SENDERS = 10
APPLIES = 20


def rcpt_ok(port: int, rcpt: str) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
            s.ehlo("bench.test")
            s.mail("bench@remote.test")
            return s.rcpt(rcpt)[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def control_apply(data: Path, site: Path) -> dict[str, object]:
    """What `mailplat apply` sends to a running server, minus the CLI's own plan display."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(600)
        sock.connect(str(data / "state" / "control.sock"))
        request = {"cmd": "apply", "site": str(site), "by": "bench"}
        sock.sendall(json.dumps(request).encode() + b"\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    reply = json.loads(raw)
    assert isinstance(reply, dict)
    return reply


def time_until(predicate: Callable[[], bool], timeout: float = 120.0) -> float | None:
    start = time.perf_counter()
    if wait_until(predicate, timeout, interval=0.002):
        return time.perf_counter() - start
    return None


def _rename_group(site: Path, index: int, old: str, new: str) -> Path:
    path = site / "postoffices" / f"po{index:05d}.yaml"
    text = path.read_text()
    path.write_text(text.replace(f"address: {old}@", f"address: {new}@", 1))
    return path


def scenario_7(ctx: Context) -> list[Record]:
    """One-line change on a running big site until the new route answers."""
    s = ctx.sizes
    label = f"{s.scale_postoffices} po x {s.scale_mailboxes} mbox"
    root = ctx.work / "reload"
    shutil.rmtree(root, ignore_errors=True)
    smtp_port, pop3_port = free_port(), free_port()
    site = gen_site.generate(
        root / "site", s.scale_postoffices, s.scale_mailboxes, smtp_port, pop3_port
    )
    data = root / "data"
    sock_rec = Record("7", f"one-line change live (apply), {label}", "ms", target="< 200 ms")
    watch_rec = Record(
        "7", f"one-line change live (--watch save), {label}", "ms", target="< 200 ms"
    )
    subprocess.run(
        mailplat_cmd("apply", str(site), "--yes", "--data", str(data)),
        check=False,
        capture_output=True,
    )
    server = MailplatServer(
        site, data, smtp_port, pop3_port, log=root / "serve.log", extra_args=("--watch",)
    )
    try:
        with ctx.busy(f"s7 mailplat serving {label}"):
            server.start(timeout=600)
        target = min(7, s.scale_postoffices - 1)
        domain = f"po{target:05d}.test"
        # Through the control socket (the path of `mailplat apply` and git push):
        # stop the watcher from racing us by timing the apply call itself.
        _rename_group(site, target, "team", "crew")
        start = time.perf_counter()
        reply = control_apply(data, site)
        answered = time_until(lambda: rcpt_ok(smtp_port, f"crew@{domain}"))
        if not reply.get("ok") or answered is None:
            sock_rec.status = "error"
            sock_rec.notes.append(f"apply reply: {str(reply)[:300]}")
        else:
            sock_rec.mailplat = round((time.perf_counter() - start) * 1000, 1)
            sock_rec.extra["server_ms"] = reply.get("ms")
            sock_rec.notes.append(
                f"server-side reload {reply.get('ms')} ms, "
                f"{reply.get('files_parsed')} file(s) parsed"
            )
        ctx.log(
            f"s7 mailplat apply via socket: {sock_rec.mailplat} ms ({reply.get('ms')} ms in server)"
        )
        # A save under --watch, timed from the write until RCPT accepts.
        time.sleep(0.5)
        _rename_group(site, target, "crew", "squad")
        start = time.perf_counter()
        answered = time_until(lambda: rcpt_ok(smtp_port, f"squad@{domain}"))
        if answered is None:
            watch_rec.status = "error"
            watch_rec.notes.append("the watched save never went live")
        else:
            watch_rec.mailplat = round(answered * 1000, 1)
            watch_rec.notes.append("includes the watcher's 50 ms debounce")
        ctx.log(f"s7 mailplat --watch save: {watch_rec.mailplat} ms")
    except RuntimeError as exc:
        ctx.mailplat_error = str(exc)
        mailplat_failed(ctx, sock_rec)
        mailplat_failed(ctx, watch_rec)
    finally:
        server.stop()
    # Postfix: add one line to the virtual mailbox map, reload, until RCPT accepts.
    users = [f"m{i}" for i in range(s.scale_postoffices * s.scale_mailboxes)]
    with (
        ctx.busy(f"s7 postfix with {len(users)} virtual mailboxes"),
        postfix_peer(ctx, users) as pf,
    ):
        if pf is not None:
            sock_rec.peer_name = watch_rec.peer_name = "postfix reload"
            vmap = pf.etc / "vmailbox"
            start = time.perf_counter()
            with vmap.open("a") as fh:
                fh.write(f"crew@{pf.domain} m0/\n")
            subprocess.run(
                ["postfix", "-c", str(pf.etc), "reload"], check=False, capture_output=True
            )
            answered = time_until(lambda: rcpt_ok(pf.port, f"crew@{pf.domain}"))
            if answered is not None:
                sock_rec.peer = watch_rec.peer = round((time.perf_counter() - start) * 1000, 1)
            ctx.log(f"s7 postfix reload: {sock_rec.peer} ms")
    shutil.rmtree(root, ignore_errors=True)
    return [sock_rec, watch_rec]


class Senders:
    """SENDERS threads sending to one address; counts accepted and failed transactions."""

    def __init__(self, port: int, rcpt: str) -> None:
        self.port, self.rcpt = port, rcpt
        self.accepted = 0
        self.failed: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(SENDERS)]

    def _run(self) -> None:
        body = b"Subject: reload load\r\n\r\n" + (b"x" * 98 + b"\r\n") * 10
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
                    s.sendmail("load@remote.test", [self.rcpt], body)
                with self.lock:
                    self.accepted += 1
            except (OSError, smtplib.SMTPException) as exc:
                with self.lock:
                    self.failed.append(repr(exc))

    def rate_over(self, seconds: float, during: Callable[[], None] | None = None) -> float:
        before, start = self.accepted, time.perf_counter()
        if during is None:
            time.sleep(seconds)
        else:
            during()
        return (self.accepted - before) / (time.perf_counter() - start)

    def __enter__(self) -> Senders:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def _under_load(
    rec: Record,
    side: str,
    port: int,
    rcpt: str,
    reload: Callable[[int], None],
    delivered: Callable[[], int],
    ctx: Context,
) -> None:
    with Senders(port, rcpt) as load:
        time.sleep(0.5)
        base = load.rate_over(3.0)
        during = load.rate_over(0, lambda: [reload(i) for i in range(APPLIES)])
    ok = wait_until(lambda: delivered() >= load.accepted, 120)
    dip = max(0.0, 1 - during / base) if base else None
    rec.extra[side] = {
        "baseline_msg_s": round(base, 1),
        "during_msg_s": round(during, 1),
        "dip": round(dip, 3) if dip is not None else None,
        "failed": len(load.failed),
        "accepted": load.accepted,
        "delivered": delivered(),
        "lost": max(0, load.accepted - delivered()) if ok else load.accepted - delivered(),
        "first_failures": load.failed[:3],
    }
    value = round(during, 1)
    if side == "mailplat":
        rec.mailplat = value
    else:
        rec.peer = value
    ctx.log(f"s8 {side}: {rec.extra[side]}")


def scenario_8(ctx: Context) -> list[Record]:
    """10 senders while 20 applies happen: failures, losses, throughput dip."""
    rec = Record(
        "8",
        f"{SENDERS} senders during {APPLIES} applies",
        "msg/s",
        target="0 failed, 0 lost, dip < 10%",
    )
    root = ctx.work / "reload-load"
    shutil.rmtree(root, ignore_errors=True)
    smtp_port, pop3_port = free_port(), free_port()
    site = write_bench_site(root, smtp_port, pop3_port, ["u", "v"], password_hash())
    data = root / "data"
    po = site / "postoffices" / "bench.yaml"
    server = MailplatServer(site, data, smtp_port, pop3_port, log=root / "serve.log")
    try:
        server.start()

        def apply(i: int) -> None:
            # Alternate u's extra address: a routing change every time.
            text = po.read_text().replace(f"extra{i - 1}@", f"extra{i}@")
            if "extra" not in text:
                text = text.replace("  u:\n", f"  u:\n    addresses: [extra{i}@bench.test]\n", 1)
            po.write_text(text)
            reply = control_apply(data, site)
            assert reply.get("ok"), reply

        def delivered() -> int:
            return sum(count_files(server.maildir("u") / d) for d in ("new", "cur"))

        _under_load(rec, "mailplat", smtp_port, "u@bench.test", apply, delivered, ctx)
    except (RuntimeError, AssertionError) as exc:
        ctx.mailplat_error = str(exc)
        mailplat_failed(ctx, rec)
    finally:
        server.stop()
    with postfix_peer(ctx, ["u"]) as pf:
        if pf is not None:
            rec.peer_name = "postfix reload"

            def reload(_i: int) -> None:
                subprocess.run(
                    ["postfix", "-c", str(pf.etc), "reload"], check=False, capture_output=True
                )

            def pf_delivered() -> int:
                return sum(count_files(pf.maildir("u") / d) for d in ("new", "cur"))

            _under_load(rec, "postfix", pf.port, f"u@{pf.domain}", reload, pf_delivered, ctx)
    mp = rec.extra.get("mailplat", {})
    if mp:
        rec.notes.append(
            f"mailplat: {mp['failed']} failed, {mp['lost']} lost, dip {mp['dip']:.0%}"
            if mp.get("dip") is not None
            else f"mailplat: {mp}"
        )
    pfx = rec.extra.get("postfix", {})
    if pfx:
        rec.notes.append(
            f"postfix: {pfx['failed']} failed, {pfx['lost']} lost, dip {pfx['dip']:.0%}"
            if pfx.get("dip") is not None
            else f"postfix: {pfx}"
        )
    shutil.rmtree(root, ignore_errors=True)
    return [rec]
