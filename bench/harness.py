"""The method every scenario shares: sizes, the servers of a scenario, interleaved rounds.

A scenario starts its servers once (mailplat and its peer side by side, each
warmed up the same way) and keeps them for all its cases. Each case then runs
`rounds` times as A B A B ...: mailplat, then the peer right after it (then
smtp-sink, the floor, where there is one), so both sides of a round see the
same moment of a shared machine. `run_rounds` does the alternation and puts
every side's raw numbers into the case's `Record`.

A side that cannot run (Postfix not installable here, a mailplat setting not
built yet) leaves its rows marked `pending` or `skipped` with the reason;
nothing is left out silently and nothing is faked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.mailplat_side import MailplatServer, mailplat_cmd, write_bench_site
from bench.peers import PeerUnavailable, sink
from bench.peers.postfix import PostfixPeer
from bench.pop3_load import password_hash
from bench.record import Record, Round
from bench.util import BENCH_ROOT, REGISTRY, count_files, free_port

Log = Callable[[str], None]

# Said under the table and stored in the JSON: the ratios mean nothing without it.
DURABILITY = (
    "Durability is the same rule on both sides: each message is fsynced to disk before the "
    "250 reply (Postfix's stock cleanup; mailplat's spool, which has no setting to skip it), "
    "and a Maildir file is fsynced before it counts as delivered. Postfix does 2 fsyncs and "
    "1 rename per message (counted with strace); mailplat does one fdatasync of its journal "
    "shared by the messages accepted together, one fsync per Maildir file, and one fsync "
    "per Maildir folder per 20 ms of deliveries (tests/e2e/test_fsync_order.py counts them)."
)


@dataclass(frozen=True)
class Sizes:
    """How big a run is: `full` is the issue's numbers, `quick` and `tiny` smaller."""

    name: str
    messages: int  # N per SMTP case
    sessions: tuple[int, ...]  # concurrent SMTP sessions per case
    e2e_sessions: int
    rcpt_sessions: tuple[int, ...]  # sessions of the 1 KiB x many recipients cases
    pop_mailboxes: int
    pop_messages: int
    scale_postoffices: int
    scale_mailboxes: int
    idle_sessions: int
    peer_idle_sessions: int = 0  # 0: as many as idle_sessions (Postfix forks one smtpd each)
    big_size: int = 64 * 1024
    many_rcpts: int = 10
    rounds: int = 3
    load_seconds: float = 3.0  # baseline of the reload-under-load scenario
    applies: int = 20  # applies (postfix reloads) during the load
    warmup: int = 100  # messages each side gets before a scenario's first round


FULL = Sizes("full", 5000, (1, 10, 50), 10, (1, 10, 50), 20, 250, 10_000, 10, 1000)
QUICK = Sizes(
    "quick", 2000, (1, 10, 50), 10, (10,), 20, 250, 10_000, 10, 1000, peer_idle_sessions=200
)
TINY = Sizes(
    "tiny",
    20,
    (1, 2),
    2,
    (2,),
    2,
    5,
    20,
    2,
    10,
    big_size=8 * 1024,
    many_rcpts=3,
    rounds=1,
    load_seconds=1.0,
    applies=5,
    warmup=4,
)


@dataclass
class Context:
    """What every scenario gets: sizes, rounds, a scratch dir, whether to run peers, a logger."""

    sizes: Sizes
    rounds: int
    work: Path
    peers: bool
    log: Log
    peer_errors: dict[str, str] = field(default_factory=dict)
    mailplat_error: str = ""
    busy: Callable[[str], AbstractContextManager[Any]] = lambda _msg: nullcontext()
    # What one scenario leaves for a later one (the big generated and applied site).
    shared: dict[str, Any] = field(default_factory=dict)
    # perf_counter() at the start of the run: every side's run records when it ran.
    t0: float = field(default_factory=time.perf_counter)


def work_dir() -> Path:
    """A fresh scratch dir for one run, on the same disk as the peers' queues.

    World-searchable (0755, not mkdtemp's 0700): the peers' own users (vmail,
    postfix, dovenull) walk into their trees below it.
    """
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH_ROOT))
    path.chmod(0o755)
    return path


# -- the servers of a scenario ---------------------------------------------------------------


@contextmanager
def mailplat_server(
    ctx: Context,
    name: str,
    mailboxes: list[str],
    fill: Callable[[MailplatServer], None] | None = None,
    hold: bool = False,
) -> Iterator[MailplatServer | None]:
    """A fresh site + data root under ctx.work, served until the block ends; None if it fails."""
    root = ctx.work / f"mailplat-{name}"
    shutil.rmtree(root, ignore_errors=True)
    smtp_port, pop3_port = free_port(), free_port()
    site = write_bench_site(root, smtp_port, pop3_port, mailboxes, password_hash(), hold=hold)
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
    rec.fail(
        "mailplat serve not runnable yet (module missing)"
        if missing
        else f"mailplat: {err[-200:]}",
        "pending" if missing else "error",
    )


def setting_missing(ctx: Context, name: str, site: Path, setting: str) -> tuple[str, str] | None:
    """(status, reason) when `mailplat validate` refuses a site that uses `setting`, else None.

    A setting the lead has not built yet fails validation as an unknown key:
    that is `pending`. Any other refusal is an `error` of the bench site.
    """
    res = subprocess.run(
        mailplat_cmd("validate", str(site)), capture_output=True, text=True, check=False
    )
    if res.returncode == 0:
        return None
    out = (res.stdout + res.stderr).strip()
    first = next((ln for ln in out.splitlines() if "error: " in ln), out[:200])
    leaf = setting.rsplit(".", 1)[-1]
    if f"'{leaf}'" in out:
        said = first.split("error: ", 1)[-1].strip()[:160]
        reason = f"mailplat does not accept `{setting}` yet (validate: {said})"
        ctx.log(f"[yellow]{name}: {reason}")
        return "pending", reason
    return "error", f"mailplat validate refused the bench site: {out[-300:]}"


@contextmanager
def postfix_peer(
    ctx: Context,
    users: list[str],
    smtpd_limit: int = 100,
    deliver: bool = True,
    maildirs: bool = True,
) -> Iterator[PostfixPeer | None]:
    """A private Postfix under this run's scratch dir, or None (reason logged once)."""
    if not ctx.peers or "postfix" in ctx.peer_errors:
        yield None
        return
    peer = PostfixPeer(
        port=free_port(),
        users=users,
        smtpd_limit=smtpd_limit,
        root=ctx.work / "postfix",
        deliver=deliver,
        maildirs=maildirs,
    )
    try:
        peer.start()
    except (PeerUnavailable, RuntimeError, TimeoutError) as exc:
        ctx.peer_errors["postfix"] = str(exc)
        ctx.log(f"[yellow]postfix unavailable: {exc}")
        REGISTRY.run_stop("postfix")
        yield None
        return
    try:
        yield peer
    finally:
        start = time.perf_counter()
        REGISTRY.run_stop("postfix")
        took = time.perf_counter() - start
        if took > 5:
            ctx.log(f"postfix stopped and its queue and Maildirs removed in {took:.0f} s")


@contextmanager
def sink_peer(ctx: Context) -> Iterator[tuple[int, int] | None]:
    """smtp-sink's (port, pid), or None."""
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
    REGISTRY.note_server("smtp-sink", proc.pid)
    try:
        yield port, proc.pid
    finally:
        REGISTRY.stop_process(proc)


# -- Maildirs --------------------------------------------------------------------------------


def clear_maildirs(dirs: list[Path]) -> None:
    """Empty new/ and cur/ so the next run delivers into an empty folder (both sides alike)."""
    for d in dirs:
        for sub in ("new", "cur"):
            p = d / sub
            if p.is_dir():
                with os.scandir(p) as it:
                    for entry in it:
                        os.unlink(entry.path)


def delivered(dirs: list[Path]) -> int:
    return sum(count_files(d / "new") + count_files(d / "cur") for d in dirs)


def drain(
    dirs: list[Path], expected: int, timeout: float, run_seconds: float = 0.0
) -> tuple[bool, float]:
    """Wait until `expected` files are delivered; (reached, seconds waited).

    Counting means listing every Maildir (20,000 names in the 10-recipient
    case), and the harness shares the 2 CPUs with the servers: the poll
    interval grows with the run, to 0.5% of its length so far (5 to 100 ms),
    which bounds both the timing error and what the polling costs.
    """
    start = time.perf_counter()
    end = start + timeout
    while True:
        if delivered(dirs) >= expected:
            return True, time.perf_counter() - start
        now = time.perf_counter()
        if now > end:
            return False, now - start
        time.sleep(min(0.1, max(0.005, (run_seconds + now - start) * 0.005)))


# -- interleaved rounds ----------------------------------------------------------------------


@dataclass
class Measure:
    """What one side's run gave: the value (None: failed), its raw numbers, what went wrong."""

    value: float | None
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


SideRun = Callable[[], Measure]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def run_rounds(
    ctx: Context,
    rec: Record,
    sides: dict[str, SideRun],
    rounds: int | None = None,
) -> None:
    """Run the sides of one case A B [C] A B [C] ... and store every round in rec.

    sides maps "mailplat" / "peer" / "sink" to a callable doing one run; they
    run in that order within a round. A mailplat run without a value makes the
    row an error (with the run's notes); a peer run without one only loses that
    round's ratio.
    """
    order = [s for s in ("mailplat", "peer", "sink") if s in sides]
    label = {"mailplat": "mailplat", "peer": rec.peer_name or "peer", "sink": "smtp-sink"}
    count = rounds if rounds is not None else ctx.rounds
    for i in range(count):
        rnd = Round()
        for side in order:
            with ctx.busy(f"s{rec.scenario} {rec.case}: round {i + 1}/{count}, {label[side]}"):
                began = time.perf_counter()
                m = sides[side]()
                ended = time.perf_counter()
            setattr(rnd, side, m.value)
            # When it ran, in seconds since the bench started: the JSON shows the A B A B order.
            when = {"began_s": round(began - ctx.t0, 3), "ended_s": round(ended - ctx.t0, 3)}
            rnd.raw[side] = {**m.raw, **when}
            rec.notes += [f"round {i + 1}, {label[side]}: {n}" for n in m.notes]
            if side == "mailplat" and m.value is None and rec.status == "ok":
                rec.status = "error"
        rec.add_round(rnd)
        parts = [f"{label[s]} {_fmt(getattr(rnd, s))}" for s in order]
        ratio = "" if rnd.ratio is None else f"  ratio {rnd.ratio:.2f}"
        ctx.log(f"s{rec.scenario} {rec.case:<30} round {i + 1}: {', '.join(parts)}{ratio}")
