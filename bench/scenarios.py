"""The six scenarios of issue 4; each returns Records with both sides and the ratio.

Every scenario starts the servers it needs and stops them in a `finally`
(the REGISTRY stops anything left over at exit). A side that cannot run here
(Postfix not installable, a mailplat command not written yet) yields a Record
with status `skipped` or `pending` and the reason, never a crash of the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import gen_site
from bench.mailplat_side import MailplatServer, mailplat_cmd, write_bench_site
from bench.peers import PeerUnavailable, sink
from bench.peers.dovecot import DovecotPeer
from bench.peers.postfix import PostfixPeer
from bench.pop3_load import fill_maildir, password_hash, retrieve_all
from bench.smtp_load import SmtpRun, recipients, smtp_source
from bench.util import (
    BENCH_ROOT,
    REGISTRY,
    children_of,
    count_files,
    free_port,
    pss_kb,
    raise_nofile,
    wait_banner,
    wait_until,
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """How big a run is: `full` is the issue's numbers, `quick` and `tiny` smaller."""

    name: str
    messages: int  # N per SMTP case
    sessions: tuple[int, ...]  # concurrent SMTP sessions per case
    e2e_sessions: int
    pop_mailboxes: int
    pop_messages: int
    scale_postoffices: int
    scale_mailboxes: int
    idle_sessions: int
    peer_idle_sessions: int = 0  # 0: as many as idle_sessions (Postfix forks one smtpd each)
    big_size: int = 64 * 1024
    many_rcpts: int = 10


FULL = Sizes("full", 5000, (1, 10, 50), 10, 20, 100, 10_000, 10, 1000)
QUICK = Sizes("quick", 500, (1, 10, 50), 10, 20, 100, 2_000, 10, 1000, peer_idle_sessions=200)
TINY = Sizes("tiny", 6, (1, 2), 2, 2, 3, 20, 2, 10, big_size=8 * 1024, many_rcpts=3)


@dataclass
class Record:
    """One line of the table and of the JSON: both sides, the ratio, the target."""

    scenario: str
    case: str
    metric: str
    mailplat: float | None = None
    peer_name: str = ""
    peer: float | None = None
    sink: float | None = None
    target: str = ""
    status: str = "ok"  # ok | pending | error | skipped
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """mailplat / peer, as the issue asks (for rates >= 1.0 means mailplat is faster)."""
        if self.mailplat is None or not self.peer:
            return None
        return self.mailplat / self.peer

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


@dataclass
class Context:
    """What every scenario gets: sizes, a scratch dir, whether to run peers, a logger."""

    sizes: Sizes
    work: Path
    peers: bool
    log: Log
    peer_errors: dict[str, str] = field(default_factory=dict)
    mailplat_error: str = ""
    busy: Callable[[str], AbstractContextManager[Any]] = lambda _msg: nullcontext()


# -- helpers ---------------------------------------------------------------------------------


@contextmanager
def mailplat_server(
    ctx: Context,
    name: str,
    mailboxes: list[str],
    fill: Callable[[MailplatServer], None] | None = None,
) -> Iterator[MailplatServer | None]:
    """A fresh site + data root under ctx.work, served until the block ends; None if it fails."""
    root = ctx.work / f"mailplat-{name}"
    shutil.rmtree(root, ignore_errors=True)
    smtp_port, pop3_port = free_port(), free_port()
    site = write_bench_site(root, smtp_port, pop3_port, mailboxes, password_hash())
    server = MailplatServer(site, root / "data", smtp_port, pop3_port, log=root / "serve.log")
    if fill is not None:
        fill(server)
    try:
        server.start()
    except RuntimeError as exc:
        ctx.mailplat_error = str(exc)
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "?"
        ctx.log(f"[red]mailplat serve did not start: {last} (log: {root / 'serve.log'})")
        yield None
        return
    try:
        yield server
    finally:
        server.stop()


def mailplat_failed(ctx: Context, rec: Record) -> None:
    """Mark a record whose mailplat side could not run: pending while the server is unwritten."""
    err = ctx.mailplat_error
    missing = "ModuleNotFoundError" in err or "ImportError" in err or "No module named" in err
    rec.status = "pending" if missing else "error"
    rec.notes.append(
        "mailplat serve not runnable yet (module missing)" if missing else f"mailplat: {err[-200:]}"
    )


@contextmanager
def postfix_peer(
    ctx: Context, users: list[str], smtpd_limit: int = 100
) -> Iterator[PostfixPeer | None]:
    """A private Postfix, or None (with the reason logged once) when it cannot run here."""
    if not ctx.peers or "postfix" in ctx.peer_errors:
        yield None
        return
    peer = PostfixPeer(port=free_port(), users=users, smtpd_limit=smtpd_limit)
    try:
        peer.start()
    except (PeerUnavailable, RuntimeError) as exc:
        ctx.peer_errors["postfix"] = str(exc)
        ctx.log(f"[yellow]postfix unavailable: {exc}")
        REGISTRY.run_stop("postfix")
        yield None
        return
    try:
        yield peer
    finally:
        REGISTRY.run_stop("postfix")


@contextmanager
def sink_peer(ctx: Context) -> Iterator[int | None]:
    """smtp-sink's port, or None."""
    if not ctx.peers or "smtp-sink" in ctx.peer_errors:
        yield None
        return
    port = free_port()
    try:
        proc = sink.start(port)
    except (PeerUnavailable, RuntimeError, TimeoutError) as exc:
        ctx.peer_errors["smtp-sink"] = str(exc)
        yield None
        return
    try:
        yield port
    finally:
        REGISTRY.stop_process(proc)


def clear_maildirs(dirs: list[Path]) -> None:
    for d in dirs:
        for sub in ("new", "cur"):
            p = d / sub
            if p.is_dir():
                with os.scandir(p) as it:
                    for entry in it:
                        os.unlink(entry.path)


def delivered(dirs: list[Path]) -> int:
    return sum(count_files(d / "new") + count_files(d / "cur") for d in dirs)


def check_run(run: SmtpRun, side: str) -> list[str]:
    """Problems smtp-source reported (it warns, and goes on, on rejected commands)."""
    notes = []
    if not run.ok:
        notes.append(f"{side}: smtp-source exited {run.returncode}: {run.output[-300:]}")
    elif "warning" in run.output or "fatal" in run.output:
        notes.append(f"{side}: smtp-source: {run.output[-300:]}")
    return notes


def drain(dirs: list[Path], expected: int, timeout: float) -> tuple[bool, float]:
    """Wait until `expected` files are delivered; (reached, seconds waited)."""
    start = time.perf_counter()
    ok = wait_until(lambda: delivered(dirs) >= expected, timeout, 0.01)
    return ok, time.perf_counter() - start


def fmt_case(size: int, rcpts: int, sessions: int) -> str:
    kib = f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
    return f"{kib}, {rcpts} rcpt, {sessions} sess"


# -- scenarios 1 and 2: SMTP accept throughput ---------------------------------------------


def _smtp_cases(ctx: Context, scenario: str, cases: list[tuple[int, int, int]]) -> list[Record]:
    n = ctx.sizes.messages
    users = recipients(max(r for _s, r, _x in cases))
    records = [
        Record(scenario, fmt_case(*c), "msg/s", peer_name="postfix", target=">= 1.0") for c in cases
    ]
    drain_timeout = max(60.0, n * max(r for _s, r, _x in cases) / 50)

    def measure(side: str, port: int, dirs: list[Path] | None) -> None:
        # Warm up once (Postfix spawns its smtpd processes, mailplat's caches fill).
        smtp_source(port, min(20, n), 2, 1024, 1)
        if dirs is not None:
            drain(dirs, min(20, n), drain_timeout)
        for rec, (size, rcpts, sessions) in zip(records, cases, strict=True):
            if dirs is not None:
                clear_maildirs(dirs)
            with ctx.busy(f"s{scenario} {side} {rec.case}: {n} messages"):
                run = smtp_source(port, n, sessions, size, rcpts)
            notes = check_run(run, side)
            value = run.rate if run.ok else None
            line = f"s{scenario} {side:<9} {rec.case:<24} {run.rate:9.1f} msg/s"
            if dirs is not None:
                want = n * rcpts
                ok, waited = drain(dirs, want, drain_timeout)
                rec.extra[f"{side}_drain_s"] = round(waited, 3)
                line += f"  (all {want} in Maildir {waited:.1f} s later)"
                if not ok:
                    notes.append(f"{side}: only {delivered(dirs)}/{want} delivered")
            ctx.log(line)
            rec.notes += notes
            if side == "mailplat":
                rec.mailplat = value
            elif side == "postfix":
                rec.peer = value
            else:
                rec.sink = value
            if notes and side == "mailplat":
                rec.status = "error"

    with mailplat_server(ctx, f"s{scenario}", users) as mp:
        if mp is None:
            for rec in records:
                mailplat_failed(ctx, rec)
        else:
            measure("mailplat", mp.smtp_port, [mp.maildir(u) for u in users])
    with postfix_peer(ctx, users) as pf:
        if pf is not None:
            measure("postfix", pf.port, [pf.maildir(u) for u in users])
    with sink_peer(ctx) as sink_port:
        if sink_port is not None:
            measure("smtp-sink", sink_port, None)
    return records


def scenario_1(ctx: Context) -> list[Record]:
    """SMTP accept throughput, 1 KiB, 1 recipient, at each concurrency."""
    return _smtp_cases(ctx, "1", [(1024, 1, s) for s in ctx.sizes.sessions])


def scenario_2(ctx: Context) -> list[Record]:
    """The same with 64 KiB messages, and with 10 recipients per message."""
    s = ctx.sizes
    cases = [(s.big_size, 1, n) for n in s.sessions] + [(1024, s.many_rcpts, n) for n in s.sessions]
    return _smtp_cases(ctx, "2", cases)


# -- scenario 3: end to end ----------------------------------------------------------------


def scenario_3(ctx: Context) -> list[Record]:
    """From the first connection until every message is a file in Maildir new/."""
    n, sessions = ctx.sizes.messages, ctx.sizes.e2e_sessions
    rec = Record(
        "3", f"end to end, 1 KiB, {sessions} sess", "msg/s", peer_name="postfix", target=">= 1.0"
    )
    timeout = max(120.0, n / 20)

    def measure(side: str, port: int, new_dir: Path) -> float | None:
        smtp_source(port, min(20, n), 2)
        wait_until(lambda: count_files(new_dir) >= min(20, n), timeout)
        clear_maildirs([new_dir.parent])
        with ctx.busy(f"s3 {side}: {n} messages until all in new/"):
            start = time.perf_counter()
            run = smtp_source(port, n, sessions)
            accepted = time.perf_counter() - start
            ok = wait_until(lambda: count_files(new_dir) >= n, timeout, 0.005)
        total = time.perf_counter() - start
        rec.notes += check_run(run, side)
        rec.extra[f"{side}_accept_s"] = round(accepted, 3)
        rec.extra[f"{side}_total_s"] = round(total, 3)
        if not ok:
            rec.notes.append(
                f"{side}: only {count_files(new_dir)}/{n} in new/ after {timeout:.0f} s"
            )
            ctx.log(f"s3 {side:<9} [red]incomplete: {count_files(new_dir)}/{n}")
            return None
        ctx.log(f"s3 {side:<9} {n} messages in new/ after {total:.2f} s ({n / total:.1f} msg/s)")
        return n / total

    with mailplat_server(ctx, "s3", ["u"]) as mp:
        if mp is None:
            mailplat_failed(ctx, rec)
        else:
            rec.mailplat = measure("mailplat", mp.smtp_port, mp.maildir("u") / "new")
            if rec.mailplat is None:
                rec.status = "error"
    with postfix_peer(ctx, ["u"]) as pf:
        if pf is not None:
            rec.peer = measure("postfix", pf.port, pf.maildir("u") / "new")
    return [rec]


# -- scenario 4: POP3 ----------------------------------------------------------------------


def scenario_4(ctx: Context) -> list[Record]:
    """POP3: M mailboxes x K messages, everything RETRieved by M concurrent clients."""
    m, k = ctx.sizes.pop_mailboxes, ctx.sizes.pop_messages
    names = [f"p{i}" for i in range(m)]
    logins = [f"{n}@bench.test" for n in names]
    rec = Record(
        "4",
        f"POP3 RETR, {m} mbox x {k}, {m} clients",
        "msg/s",
        peer_name="dovecot",
        target=">= 1.0",
    )

    def fill(server: MailplatServer) -> None:
        for name in names:
            fill_maildir(server.maildir(name), k, 1024)

    def measure(side: str, port: int) -> float | None:
        with ctx.busy(f"s4 {side}: {m} clients RETR {m * k} messages"):
            res = retrieve_all(port, logins)
        if res.errors or res.messages != m * k:
            rec.notes.append(f"{side}: {res.messages}/{m * k} retrieved; {res.errors[:3]}")
            ctx.log(f"s4 {side:<9} [red]{res.messages}/{m * k} retrieved {res.errors[:1]}")
            return None
        ctx.log(
            f"s4 {side:<9} {res.messages} messages in {res.seconds:.2f} s ({res.rate:.1f} msg/s)"
        )
        rec.extra[f"{side}_s"] = round(res.seconds, 3)
        return res.rate

    with mailplat_server(ctx, "s4", names, fill=fill) as mp:
        if mp is None or mp.pop3_port is None:
            mailplat_failed(ctx, rec)
        else:
            rec.mailplat = measure("mailplat", mp.pop3_port)
            if rec.mailplat is None:
                rec.status = "error"
    if ctx.peers and "dovecot" not in ctx.peer_errors:
        peer = DovecotPeer(port=free_port(), users={login: password_hash() for login in logins})
        try:
            peer.prepare()
            for login in logins:
                fill_maildir(peer.maildir(login), k, 1024)
            peer.start()
            rec.peer = measure("dovecot", peer.port)
        except (PeerUnavailable, RuntimeError) as exc:
            ctx.peer_errors["dovecot"] = str(exc)
            rec.notes.append(f"dovecot unavailable: {exc}")
        finally:
            REGISTRY.run_stop("dovecot")
    return [rec]


# -- scenario 5: config scale --------------------------------------------------------------


@dataclass
class Timed:
    """A command's wall time, peak RSS (ru_maxrss of that child alone) and output."""

    seconds: float
    peak_rss_kb: int
    returncode: int
    output: str


def timed(cmd: list[str], timeout: float = 900.0) -> Timed:
    """Run cmd; os.wait4 gives the rusage of exactly this child (its own peak RSS)."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        REGISTRY.add_process(proc)
        end = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > end:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        REGISTRY.stop_process(proc)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return Timed(seconds, int(usage.ru_maxrss), proc.returncode, text)


def _no_such_command(t: Timed) -> bool:
    """The command (or the module behind it) is not written yet."""
    if "ModuleNotFoundError" in t.output or "No module named" in t.output:
        return True
    return t.returncode == 2 and ("No such command" in t.output or "Usage:" in t.output[:200])


def scenario_5(ctx: Context) -> list[Record]:
    """Config scale: generated site of P postoffices x M mailboxes; validate, plan, apply, serve."""
    s = ctx.sizes
    label = f"{s.scale_postoffices} po x {s.scale_mailboxes} mbox"
    root = ctx.work / "scale"
    shutil.rmtree(root, ignore_errors=True)
    smtp_port, pop3_port = free_port(), free_port()
    t0 = time.perf_counter()
    site = gen_site.generate(
        root / "site", s.scale_postoffices, s.scale_mailboxes, smtp_port, pop3_port
    )
    ctx.log(f"s5 generated {label} in {time.perf_counter() - t0:.1f} s")
    data = root / "data"
    records: list[Record] = []
    steps = [
        ("validate", ["validate", str(site)], (0,)),
        ("plan (cold)", ["plan", str(site), "--data", str(data)], (0, 2)),
        ("apply --yes (cold)", ["apply", str(site), "--yes", "--data", str(data)], (0,)),
        ("plan after apply", ["plan", str(site), "--data", str(data)], (0, 2)),
    ]
    results: dict[str, Timed] = {}
    for name, args, good in steps:
        with ctx.busy(f"s5 mailplat {name}, {label}"):
            t = timed(mailplat_cmd(*args))
        results[name] = t
        rec = Record("5", f"{name}, {label}", "s", t.seconds)
        rec.extra["peak_rss_mb"] = round(t.peak_rss_kb / 1024, 1)
        if _no_such_command(t):
            rec.status, rec.mailplat = "pending", None
            rec.notes.append(f"`mailplat {args[0]}` does not exist yet")
            ctx.log(f"s5 {name:<20} [yellow]pending: no `mailplat {args[0]}` command yet")
        elif t.returncode not in good:
            rec.status = "error"
            rec.notes.append(f"exit {t.returncode}: {t.output[-400:]}")
            ctx.log(f"s5 {name:<20} [red]exit {t.returncode}")
        else:
            ctx.log(f"s5 {name:<20} {t.seconds:6.2f} s, peak RSS {t.peak_rss_kb / 1024:.0f} MB")
        records.append(rec)
    records[0].target = records[1].target = "validate+plan < 3 s"
    vp = [results["validate"], results["plan (cold)"]]
    if all(r.status == "ok" for r in records[:2]):
        total = sum(t.seconds for t in vp)
        peak = max(t.peak_rss_kb for t in vp) / 1024
        records.append(
            Record(
                "5",
                f"validate+plan, {label}",
                "s / MB",
                round(total, 3),
                target="< 3 s, < 500 MB",
                extra={"peak_rss_mb": round(peak, 1)},
                notes=[f"peak RSS {peak:.0f} MB"],
                status="ok",
            )
        )
    # The server once serving it.
    rec = Record("5", f"serve: RSS once listening, {label}", "MB")
    server = MailplatServer(site, data, smtp_port, pop3_port, log=root / "serve.log")
    start = time.perf_counter()
    try:
        server.start(timeout=300)
        startup = time.perf_counter() - start
        time.sleep(1.0)
        rec.mailplat = round(server.rss_kb() / 1024, 1)
        rec.extra["startup_s"] = round(startup, 3)
        rec.notes.append(f"listening {startup:.1f} s after exec")
        ctx.log(
            f"s5 serve                 RSS {rec.mailplat:.0f} MB, listening after {startup:.1f} s"
        )
    except RuntimeError as exc:
        ctx.mailplat_error = str(exc)
        mailplat_failed(ctx, rec)
        ctx.log(f"s5 serve [red]{str(exc)[:200]}")
    finally:
        server.stop()
    records.append(rec)
    shutil.rmtree(root, ignore_errors=True)
    return records


# -- scenario 6: idle connections ----------------------------------------------------------


def _tree_pss_kb(pid: int) -> int:
    """PSS of a process and all its descendants (Postfix: master + smtpd processes)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += pss_kb(p)
        todo += children_of(p)
    return total


def _open_idle(port: int, count: int) -> list[socket.socket]:
    """count sessions that got their banner and an EHLO reply, then sit idle."""
    socks = []
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
    return socks


def _idle(ctx: Context, side: str, port: int, pid: int, rec: Record, count: int) -> float | None:
    # A peer just started may refuse for a moment after its port first answered
    # (Postfix's master hands the socket to a fresh smtpd); that is not a result.
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
    time.sleep(0.5)
    before = _tree_pss_kb(pid)
    socks: list[socket.socket] = []
    try:
        with ctx.busy(f"s6 {side}: opening {count} idle sessions"):
            socks = _open_idle(port, count)
        time.sleep(1.0)
        after = _tree_pss_kb(pid)
        latencies = [wait_banner(port, 30) for _ in range(5)]
    finally:
        for s in socks:
            s.close()
    per = (after - before) / count
    banner_ms = statistics.median(latencies) * 1000
    rec.extra[f"{side}_banner_ms"] = round(banner_ms, 2)
    rec.extra[f"{side}_total_mb"] = round((after - before) / 1024, 1)
    ctx.log(
        f"s6 {side:<9} {count} idle sessions: +{(after - before) / 1024:.1f} MB "
        f"({per:.1f} KB/session); new client banner in {banner_ms:.1f} ms"
    )
    return per


def scenario_6(ctx: Context) -> list[Record]:
    """Memory of the server holding K idle SMTP sessions; banner time for a new client."""
    count = ctx.sizes.idle_sessions
    raise_nofile(count * 2 + 1024)
    rec = Record(
        "6",
        f"{count} idle SMTP sessions",
        "KB/session (PSS)",
        peer_name="postfix",
        target="< 50 KB/session",
    )
    with mailplat_server(ctx, "s6", ["u"]) as mp:
        if mp is None:
            mailplat_failed(ctx, rec)
        else:
            rec.mailplat = _idle(ctx, "mailplat", mp.smtp_port, mp.pid, rec, count)
    peer_count = ctx.sizes.peer_idle_sessions or count
    if peer_count != count:
        rec.notes.append(f"postfix measured with {peer_count} sessions (one smtpd process each)")
    with postfix_peer(ctx, ["u"], smtpd_limit=peer_count + 50) as pf:
        if pf is not None:
            pid = pf.master_pid()
            if pid is not None:
                rec.peer = _idle(ctx, "postfix", pf.port, pid, rec, peer_count)
    banner = rec.extra.get("mailplat_banner_ms")
    if banner is not None:
        rec.notes.append(f"new client's banner: mailplat {banner} ms")
        if "postfix_banner_ms" in rec.extra:
            rec.notes[-1] += f", postfix {rec.extra['postfix_banner_ms']} ms"
    return [rec]


SCENARIOS: dict[str, Callable[[Context], list[Record]]] = {
    "1": scenario_1,
    "2": scenario_2,
    "3": scenario_3,
    "4": scenario_4,
    "5": scenario_5,
    "6": scenario_6,
}
ALIASES = {
    "smtp": "1",
    "smtp-big": "2",
    "e2e": "3",
    "pop3": "4",
    "scale": "5",
    "idle": "6",
    "reload": "7",
    "reload-load": "8",
}


def _register_reload_scenarios() -> None:
    # Imported late: bench.reload_scenarios builds on the helpers above.
    from bench.reload_scenarios import scenario_7, scenario_8

    SCENARIOS["7"] = scenario_7
    SCENARIOS["8"] = scenario_8


_register_reload_scenarios()


def work_dir() -> Path:
    """A fresh scratch dir for one run, on the same disk as the peers' queues."""
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=BENCH_ROOT))
