"""Scenario 6: memory per idle SMTP session (PSS of the server's process tree), vs Postfix.

Each server's PSS (its whole process tree: Postfix's master plus one smtpd
per session) is taken once after it started and answered, before any session.
Each run then opens K sessions that got their banner and an EHLO reply,
takes the PSS again and closes them; the value is the growth over that first
baseline divided by K. Against the first baseline, not the one just before
the run: memory a run leaves behind (Python's allocator keeps its arenas,
Postfix keeps idle smtpd processes for max_idle) would make later rounds
look free. A new client's banner time while they sit open is in the raw
numbers. Postfix may be measured with fewer sessions than mailplat (one
process each): the note says so.
"""

from __future__ import annotations

import socket
import statistics
import time
from contextlib import ExitStack

from bench.harness import (
    Context,
    Measure,
    SideRun,
    mailplat_failed,
    mailplat_server,
    postfix_peer,
    run_rounds,
)
from bench.record import Goal, Record
from bench.util import process_tree, pss_kb, raise_nofile, wait_banner


def tree_pss_kb(pid: int) -> int:
    """PSS of a process and all its descendants."""
    return sum(pss_kb(p) for p in process_tree(pid))


def _open_idle(port: int, count: int) -> list[socket.socket]:
    """count sessions that got their banner and an EHLO reply, then sit idle."""
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), 30)
            socks.append(s)
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"EHLO idle.remote.test\r\n")
            while True:
                line = f.readline()
                if not line or line[3:4] != b"-":
                    break
            f.close()
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def wait_ready(port: int) -> None:
    """Three banners in a row: a peer just started may refuse for a moment after its port
    first answered (Postfix's master hands the socket to a fresh smtpd); that is not a result."""
    deadline = time.monotonic() + 20
    ready = 0
    while ready < 3:
        try:
            wait_banner(port, 10)
            ready += 1
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def idle_run(port: int, pid: int, count: int) -> SideRun:
    wait_ready(port)
    before = tree_pss_kb(pid)

    def run() -> Measure:
        socks: list[socket.socket] = []
        try:
            socks = _open_idle(port, count)
            after = tree_pss_kb(pid)
            latencies = [wait_banner(port, 30) for _ in range(5)]
        except OSError as exc:
            return Measure(None, {"sessions": count}, [f"{type(exc).__name__}: {exc}"])
        finally:
            for s in socks:
                s.close()
        raw = {
            "sessions": count,
            "pss_before_kb": before,
            "pss_after_kb": after,
            "banner_ms": round(statistics.median(latencies) * 1000, 3),
        }
        return Measure((after - before) / count, raw)

    return run


def scenario_6(ctx: Context) -> list[Record]:
    """Memory of the server holding K idle SMTP sessions; banner time for a new client."""
    count = ctx.sizes.idle_sessions
    peer_count = ctx.sizes.peer_idle_sessions or count
    raise_nofile(count * 2 + 1024)
    rec = Record(
        "6",
        f"{count} idle SMTP sessions",
        "KB/session (PSS)",
        peer_name="postfix",
        target="< 50 KB/session",
        goal=Goal("mailplat", below=50),
    )
    if peer_count != count:
        rec.notes.append(f"postfix measured with {peer_count} sessions (one smtpd process each)")
    with ExitStack() as stack:
        runs: dict[str, SideRun] = {}
        mp = stack.enter_context(mailplat_server(ctx, "s6", ["u"]))
        if mp is None:
            mailplat_failed(ctx, rec)
        else:
            runs["mailplat"] = idle_run(mp.smtp_port, mp.pid, count)
        pf = stack.enter_context(postfix_peer(ctx, ["u"], smtpd_limit=peer_count + 50))
        if pf is not None and (pid := pf.master_pid()) is not None:
            runs["peer"] = idle_run(pf.port, pid, peer_count)
        if runs:
            run_rounds(ctx, rec, runs)
    banners = []
    for side, name in (("mailplat", "mailplat"), ("peer", "postfix")):
        ms = [r.raw[side]["banner_ms"] for r in rec.rounds if "banner_ms" in r.raw.get(side, {})]
        if ms:
            banners.append(f"{name} {statistics.median(ms):.2f} ms")
    if banners:
        rec.notes.append("new client's banner while they sit open: " + ", ".join(banners))
    return [rec]
