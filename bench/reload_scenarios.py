"""Scenarios 7 and 8: a one-line change on a big running site, and applies under load.

7. The big site of scenario 5 (P postoffices x M mailboxes) is served; each
   round renames one group's address to one never used before and times from
   the apply until an SMTP RCPT to the new address is accepted (a new session
   each try). Apply goes through the control socket (what `mailplat apply`
   sends, without the CLI's plan display); a second row does the same through
   `serve --watch`, timed from the save. The peer is Postfix with the same
   mailboxes in its virtual map: one line added, `postfix reload`, until RCPT
   accepts. Each try first checks that the address is refused before the
   change, so a row can never time a change that was already live.
8. 10 concurrent senders; each run measures the accepted rate for a baseline
   while nothing changes, then during 20 back-to-back applies (20 `postfix
   reload` on the peer; 5 in the tiny run), then waits until every accepted
   message is in the Maildir. Reported: failed transactions, lost messages,
   the dip.
"""

from __future__ import annotations

import itertools
import json
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.harness import (
    Context,
    Measure,
    SideRun,
    clear_maildirs,
    mailplat_failed,
    mailplat_server,
    postfix_peer,
    run_rounds,
)
from bench.peers.postfix import POSTFIX, PostfixPeer
from bench.record import Goal, Record, Round, median
from bench.scale_scenario import ScaleSite, apply_cold, scale_site
from bench.util import count_files, wait_until

SENDERS = 10


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


class GroupRenames:
    """Renames group `team` of one postoffice to crew1, crew2, ...: one changed line each."""

    def __init__(self, site: Path, index: int) -> None:
        self.path = site / "postoffices" / f"po{index:05d}.yaml"
        self.domain = f"po{index:05d}.test"
        self.current = "team"
        self.done = 0

    def upcoming(self) -> str:
        """The address the next rename adds (checked to be refused before it)."""
        return f"crew{self.done + 1}@{self.domain}"

    def rename(self) -> str:
        """Write the next rename; returns the new address."""
        self.done += 1
        new = f"crew{self.done}"
        text = self.path.read_text()
        self.path.write_text(text.replace(f"address: {self.current}@", f"address: {new}@", 1))
        self.current = new
        return f"{new}@{self.domain}"


def _timed_change(port: int, address: str, change: Callable[[], dict[str, object]]) -> Measure:
    """Refused before, change, then time until RCPT accepts; value in ms."""
    if rcpt_ok(port, address):
        return Measure(None, {"address": address}, [f"{address} was accepted before the change"])
    start = time.perf_counter()
    raw: dict[str, object] = {"address": address, **change()}
    answered = time_until(lambda: rcpt_ok(port, address))
    if answered is None:
        return Measure(None, raw, [f"{address} never accepted after the change: {raw}"])
    return Measure(round((time.perf_counter() - start) * 1000, 1), raw)


def apply_run(port: int, big: ScaleSite, renames: GroupRenames) -> SideRun:
    def run() -> Measure:
        def change() -> dict[str, object]:
            renames.rename()
            reply = control_apply(big.data, big.site)
            if not reply.get("ok"):
                return {"apply_reply": str(reply)[:300]}
            return {"server_ms": reply.get("ms"), "files_parsed": reply.get("files_parsed")}

        return _timed_change(port, renames.upcoming(), change)

    return run


def watch_run(port: int, renames: GroupRenames) -> SideRun:
    def run() -> Measure:
        return _timed_change(port, renames.upcoming(), lambda: {"saved": renames.rename()})

    return run


def postfix_reload(pf: PostfixPeer) -> None:
    subprocess.run([POSTFIX, "-c", str(pf.etc), "reload"], check=False, capture_output=True)


def postfix_change_run(pf: PostfixPeer) -> SideRun:
    """One line added to Postfix's virtual map (a new address), reload, until RCPT accepts."""
    numbers = itertools.count(1)

    def run() -> Measure:
        address = f"crew{next(numbers)}@{pf.domain}"

        def change() -> dict[str, object]:
            with (pf.etc / "vmailbox").open("a") as fh:
                fh.write(f"{address} m0/\n")
            postfix_reload(pf)
            return {}

        return _timed_change(pf.port, address, change)

    return run


def scenario_7(ctx: Context) -> list[Record]:
    """One-line change on a running big site until the new route answers."""
    s = ctx.sizes
    label = f"{s.scale_postoffices} po x {s.scale_mailboxes} mbox"
    goal = Goal("mailplat", below=200)
    sock_rec = Record(
        "7",
        f"one-line change live (apply), {label}",
        "ms",
        peer_name="postfix reload",
        target="< 200 ms",
        goal=goal,
    )
    watch_rec = Record(
        "7",
        f"one-line change live (--watch save), {label}",
        "ms",
        peer_name="postfix reload",
        target="< 200 ms",
        goal=goal,
        notes=["includes the watcher's 50 ms debounce; a second start of the same site"],
    )
    big = scale_site(ctx)
    if "scale_applied" not in ctx.shared:
        with ctx.busy(f"s7 mailplat apply --yes (cold), {label}"):
            apply_cold(ctx, big)
    applied = ctx.shared["scale_applied"]
    renames = GroupRenames(big.site, min(7, s.scale_postoffices - 1))
    users = [f"m{i}" for i in range(s.scale_postoffices * s.scale_mailboxes)]
    with ExitStack() as stack:
        with ctx.busy(f"s7 postfix with {len(users)} virtual mailboxes"):
            pf = stack.enter_context(postfix_peer(ctx, users, maildirs=False))
        peer = {"peer": postfix_change_run(pf)} if pf is not None else {}
        for rec, extra in ((sock_rec, ()), (watch_rec, ("--watch",))):
            if applied.returncode != 0:
                rec.fail(f"mailplat apply of the big site failed: {applied.output[-300:]}")
                continue
            server = big.server(*extra)
            try:
                with ctx.busy(f"s7 mailplat serving {label}"):
                    server.start(timeout=600)
            except RuntimeError as exc:
                ctx.mailplat_error = str(exc)
                mailplat_failed(ctx, rec)
                continue
            try:
                if extra:
                    time.sleep(0.5)  # the watcher starts after the listeners
                    mine = watch_run(big.smtp_port, renames)
                else:
                    mine = apply_run(big.smtp_port, big, renames)
                run_rounds(ctx, rec, {"mailplat": mine, **peer})
            finally:
                server.stop()
    for rnd in sock_rec.rounds:
        raw = rnd.raw.get("mailplat", {})
        if "apply_reply" in raw:
            sock_rec.fail(f"apply refused: {raw['apply_reply']}")
    server_ms = [
        float(r.raw["mailplat"]["server_ms"])
        for r in sock_rec.rounds
        if r.raw.get("mailplat", {}).get("server_ms") is not None
    ]
    if server_ms:
        sock_rec.notes.append(f"server-side reload, median {median(server_ms):.1f} ms")
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


def load_run(
    ctx: Context, port: int, rcpt: str, reload: Callable[[int], None], maildir: Path
) -> SideRun:
    """Baseline rate, rate during APPLIES reloads, then every accepted message delivered."""

    def delivered() -> int:
        return sum(count_files(maildir / d) for d in ("new", "cur"))

    def applies() -> None:
        for i in range(ctx.sizes.applies):
            reload(i)

    def run() -> Measure:
        clear_maildirs([maildir])
        try:
            with Senders(port, rcpt) as load:
                time.sleep(0.5)  # all senders connected
                base = load.rate_over(ctx.sizes.load_seconds)
                start = time.perf_counter()
                during = load.rate_over(0, applies)
                applies_s = time.perf_counter() - start
        except AssertionError as exc:
            return Measure(None, {}, [f"an apply failed: {str(exc)[:300]}"])
        wait_until(lambda: delivered() >= load.accepted, 120)
        got = delivered()
        dip = max(0.0, 1 - during / base) if base else None
        raw = {
            "baseline_msg_s": round(base, 1),
            "during_msg_s": round(during, 1),
            "applies_s": round(applies_s, 3),
            "dip": None if dip is None else round(dip, 4),
            "failed": len(load.failed),
            "accepted": load.accepted,
            "delivered": got,
            "lost": max(0, load.accepted - got),
            "first_failures": load.failed[:3],
        }
        return Measure(None if dip is None else round(dip * 100, 2), raw)

    return run


def scenario_8(ctx: Context) -> list[Record]:
    """10 senders while 20 applies happen: failures, losses, throughput dip."""
    applies = ctx.sizes.applies
    rec = Record(
        "8",
        f"{SENDERS} senders during {applies} applies: dip",
        "% below baseline",
        peer_name="postfix reload",
        target="0 failed, 0 lost, dip < 10%",
    )
    rate = Record(
        "8",
        f"{SENDERS} senders during {applies} applies: rate",
        "msg/s",
        peer_name="postfix reload",
    )
    with ExitStack() as stack:
        runs: dict[str, SideRun] = {}
        mp = stack.enter_context(mailplat_server(ctx, "s8", ["u", "v"]))
        if mp is None:
            mailplat_failed(ctx, rec)
            mailplat_failed(ctx, rate)
        else:
            po = mp.site / "postoffices" / "bench.yaml"

            def apply(i: int) -> None:
                # Alternate u's extra address: a routing change every time.
                text = po.read_text().replace(f"extra{i - 1}@", f"extra{i}@")
                if "extra" not in text:
                    text = text.replace(
                        "  u:\n", f"  u:\n    addresses: [extra{i}@bench.test]\n", 1
                    )
                po.write_text(text)
                reply = control_apply(mp.data, mp.site)
                assert reply.get("ok"), reply

            runs["mailplat"] = load_run(ctx, mp.smtp_port, "u@bench.test", apply, mp.maildir("u"))
        pf = stack.enter_context(postfix_peer(ctx, ["u"]))
        if pf is not None:
            runs["peer"] = load_run(
                ctx, pf.port, f"u@{pf.domain}", lambda _i: postfix_reload(pf), pf.maildir("u")
            )
        if runs:
            run_rounds(ctx, rec, runs)
    for rnd in rec.rounds:
        rate.add_round(
            Round(
                mailplat=rnd.raw.get("mailplat", {}).get("during_msg_s"),
                peer=rnd.raw.get("peer", {}).get("during_msg_s"),
            )
        )
    mine = [r.raw["mailplat"] for r in rec.rounds if r.raw.get("mailplat", {}).get("accepted")]
    if mine and rec.status == "ok":
        failed = sum(int(m["failed"]) for m in mine)
        lost = sum(int(m["lost"]) for m in mine)
        dip = rec.mailplat
        rec.verdict = failed == 0 and lost == 0 and dip is not None and dip < 10
        rec.extra.update({"mailplat_failed": failed, "mailplat_lost": lost})
        rec.notes.append(f"mailplat over {len(mine)} round(s): {failed} failed, {lost} lost")
    theirs = [r.raw["peer"] for r in rec.rounds if r.raw.get("peer", {}).get("accepted")]
    if theirs:
        failed = sum(int(m["failed"]) for m in theirs)
        lost = sum(int(m["lost"]) for m in theirs)
        rec.notes.append(f"postfix over {len(theirs)} round(s): {failed} failed, {lost} lost")
    return [rec, rate]
