"""Scenarios 1-3: SMTP in, accept-only and delivering, and the CPU each message costs.

1. Accept, 1 KiB, 1 recipient, at 1 / 10 / 50 sessions: mailplat with
   `delivery.hold: true` (keeps every message in its queue, delivers nothing)
   against Postfix ACCEPT-ONLY (no qmgr), with smtp-sink as the floor.
2. 64 KiB at 1 / 10 / 50 sessions and 1 KiB x 10 recipients, both sides
   delivering into Maildir: messages per second from the first connection
   until the last file is in the Maildirs (the accept rate is in the raw data).
3. End to end, 1 KiB, 10 sessions, delivering; from the same runs, the CPU of
   the whole server (user+sys of its process tree from /proc, Postfix's master
   and every daemon it ran) divided by the messages.

The load is Postfix's smtp-source for every side (one connection per message).
Both servers start once per scenario and get the same warm-up; Maildirs are
emptied between runs, after the previous run was fully delivered, so no run
competes with the other side's backlog.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import (
    Context,
    Measure,
    SideRun,
    clear_maildirs,
    delivered,
    drain,
    mailplat_failed,
    mailplat_server,
    postfix_peer,
    run_rounds,
    setting_missing,
    sink_peer,
)
from bench.mailplat_side import write_bench_site
from bench.pop3_load import password_hash
from bench.record import RATIO_AT_LEAST_1, Goal, Record, Round
from bench.smtp_load import SmtpRun, recipients, smtp_source
from bench.util import free_port, tree_cpu_seconds


def fmt_case(size: int, rcpts: int, sessions: int) -> str:
    kib = f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
    return f"{kib}, {rcpts} rcpt, {sessions} sess"


def check_run(run: SmtpRun) -> list[str]:
    """Problems smtp-source reported (it warns, and goes on, on rejected commands)."""
    if not run.ok:
        return [f"smtp-source exited {run.returncode}: {run.output[-300:]}"]
    if "warning" in run.output or "fatal" in run.output:
        return [f"smtp-source: {run.output[-300:]}"]
    return []


@dataclass
class SmtpSide:
    """One server under SMTP load: where to send, whose CPU to count, where its mail lands."""

    port: int
    pid: int
    maildirs: list[Path] | None = None  # None: it delivers nothing (accept-only, smtp-sink)
    held: list[Path] = field(default_factory=list)  # must stay empty (delivery.hold)


def warm_up(ctx: Context, side: SmtpSide, sessions: int, timeout: float) -> None:
    """The same first traffic for every side (Postfix forks its daemons, mailplat fills caches)."""
    n = ctx.sizes.warmup
    smtp_source(side.port, n, sessions)
    if side.maildirs is not None:
        drain(side.maildirs, n, timeout)
        clear_maildirs(side.maildirs)


def _cpu(side: SmtpSide, cpu0: float, messages: int) -> dict[str, float]:
    cpu = tree_cpu_seconds(side.pid) - cpu0
    return {"cpu_s": round(cpu, 3), "cpu_ms_per_msg": round(cpu * 1000 / messages, 4)}


def accept_run(side: SmtpSide, n: int, size: int, rcpts: int, sessions: int) -> SideRun:
    """One smtp-source run; the value is messages accepted per second."""

    def run() -> Measure:
        cpu0 = tree_cpu_seconds(side.pid)
        res = smtp_source(side.port, n, sessions, size, rcpts)
        raw: dict[str, object] = {"messages": n, "accept_s": round(res.seconds, 4)}
        raw.update(_cpu(side, cpu0, n))
        notes = check_run(res)
        leaked = delivered(side.held) if side.held else 0
        if leaked:
            notes.append(f"delivery.hold delivered {leaked} message(s): not an accept-only run")
        raw["rate"] = round(res.rate, 2)
        return Measure(res.rate if res.ok and not leaked else None, raw, notes)

    return run


def deliver_run(
    side: SmtpSide, n: int, size: int, rcpts: int, sessions: int, timeout: float
) -> SideRun:
    """One run until every copy is a file in the Maildirs; the value is messages per second."""
    assert side.maildirs is not None
    dirs = side.maildirs
    want = n * rcpts

    def run() -> Measure:
        clear_maildirs(dirs)
        cpu0 = tree_cpu_seconds(side.pid)
        res = smtp_source(side.port, n, sessions, size, rcpts)
        ok, waited = drain(dirs, want, timeout, res.seconds)
        total = res.seconds + waited
        raw: dict[str, object] = {
            "messages": n,
            "deliveries": want,
            "accept_s": round(res.seconds, 4),
            "accept_rate": round(res.rate, 2),
            "total_s": round(total, 4),
            "delivered": delivered(dirs),
        }
        notes = check_run(res)
        if ok:
            raw.update(_cpu(side, cpu0, n))
        else:
            notes.append(f"only {delivered(dirs)}/{want} in the Maildirs after {timeout:.0f} s")
            # Let the backlog finish so the next run starts clean.
            drain(dirs, want, timeout)
        value = n / total if ok and res.ok and total > 0 else None
        return Measure(value, raw, notes)

    return run


def _run_cases(
    ctx: Context,
    scenario: str,
    cases: list[tuple[int, int, int]],
    accept_only: bool,
    title: Callable[[tuple[int, int, int]], str],
    metric: str,
    target: str,
    peer_name: str,
) -> list[Record]:
    """Start both servers (and the floor for accept-only), warm them, run every case's rounds."""
    n = ctx.sizes.messages
    users = recipients(max(r for _s, r, _x in cases))
    records = [
        Record(
            scenario, title(c), metric, peer_name=peer_name, target=target, goal=RATIO_AT_LEAST_1
        )
        for c in cases
    ]
    timeout = max(60.0, n * max(r for _s, r, _x in cases) / 20)
    not_yet: tuple[str, str] | None = None
    if accept_only:
        probe = ctx.work / f"s{scenario}-hold-check"
        site = write_bench_site(probe, free_port(), free_port(), users, password_hash(), hold=True)
        not_yet = setting_missing(ctx, f"s{scenario}", site, "delivery.hold")
    warm_sessions = max(s for _z, _r, s in cases)
    with ExitStack() as stack:
        sides: dict[str, SmtpSide] = {}
        if not_yet is None:
            mp = stack.enter_context(mailplat_server(ctx, f"s{scenario}", users, hold=accept_only))
            if mp is None:
                for rec in records:
                    mailplat_failed(ctx, rec)
            else:
                dirs = [mp.maildir(u) for u in users]
                sides["mailplat"] = (
                    SmtpSide(mp.smtp_port, mp.pid, held=dirs)
                    if accept_only
                    else SmtpSide(mp.smtp_port, mp.pid, maildirs=dirs)
                )
        pf = stack.enter_context(postfix_peer(ctx, users, deliver=not accept_only))
        if pf is not None and (pid := pf.master_pid()) is not None:
            dirs = [pf.maildir(u) for u in users]
            sides["peer"] = (
                SmtpSide(pf.port, pid, held=dirs)
                if accept_only
                else SmtpSide(pf.port, pid, maildirs=dirs)
            )
        if accept_only:
            sk = stack.enter_context(sink_peer(ctx))
            if sk is not None:
                sides["sink"] = SmtpSide(*sk)
        for side in sides.values():
            warm_up(ctx, side, warm_sessions, timeout)
        for rec, (size, rcpts, sessions) in zip(records, cases, strict=True):
            runs: dict[str, SideRun] = {}
            for name, side in sides.items():
                runs[name] = (
                    accept_run(side, n, size, rcpts, sessions)
                    if side.maildirs is None
                    else deliver_run(side, n, size, rcpts, sessions, timeout)
                )
            run_rounds(ctx, rec, runs)
    if not_yet is not None:
        for rec in records:
            rec.fail(not_yet[1], not_yet[0])
    return records


def scenario_1(ctx: Context) -> list[Record]:
    """SMTP accept, 1 KiB: mailplat with delivery.hold vs Postfix accept-only (no qmgr)."""
    return _run_cases(
        ctx,
        "1",
        [(1024, 1, s) for s in ctx.sizes.sessions],
        accept_only=True,
        title=lambda c: "accept " + fmt_case(*c),
        metric="msg/s accepted",
        target=">= 1.0x Postfix accept-only",
        peer_name="postfix accept-only",
    )


def scenario_2(ctx: Context) -> list[Record]:
    """64 KiB at each concurrency, and 1 KiB x many recipients, both sides delivering."""
    s = ctx.sizes
    cases = [(s.big_size, 1, n) for n in s.sessions] + [
        (1024, s.many_rcpts, n) for n in s.rcpt_sessions
    ]
    return _run_cases(
        ctx,
        "2",
        cases,
        accept_only=False,
        title=lambda c: fmt_case(*c),
        metric="msg/s into Maildir",
        target=">= 1.0x Postfix",
        peer_name="postfix",
    )


def scenario_3(ctx: Context) -> list[Record]:
    """End to end into Maildir, 1 KiB, both delivering; and CPU per accepted+delivered message."""
    sessions = ctx.sizes.e2e_sessions
    (e2e,) = _run_cases(
        ctx,
        "3",
        [(1024, 1, sessions)],
        accept_only=False,
        title=lambda _c: f"end to end, 1 KiB, {sessions} sess",
        metric="msg/s into Maildir",
        target=">= 1.0x Postfix",
        peer_name="postfix",
    )
    cpu = Record(
        "3",
        f"CPU per accepted+delivered 1 KiB message, {sessions} sess",
        "ms CPU/msg",
        peer_name="postfix (all daemons)",
        target="report; aim < 1.5 ms",
        goal=Goal("mailplat", below=1.5),
        status=e2e.status,
        notes=["user+sys of the server's whole process tree over each end-to-end run"],
    )
    for rnd in e2e.rounds:
        mp, pf = rnd.raw.get("mailplat", {}), rnd.raw.get("peer", {})
        cpu.add_round(
            Round(
                mailplat=mp.get("cpu_ms_per_msg") if rnd.mailplat is not None else None,
                peer=pf.get("cpu_ms_per_msg") if rnd.peer is not None else None,
            )
        )
    if e2e.status != "ok":
        cpu.notes.append("not measured: the end-to-end row did not run")
    return [e2e, cpu]
