"""Scenario 5: a generated site of P postoffices x M mailboxes: validate, plan, apply, serve.

validate and plan (cold: a fresh process and an empty data dir) run once per
round; each command's peak RSS is its own (`os.wait4` of exactly that child).
The target rows are their sum (< 3 s) and the larger peak (< 500 MB). apply
(cold), plan after apply and the server's RSS once listening run once: the
applied site is left for scenario 7, which serves the same one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import gen_site
from bench.harness import Context, mailplat_failed
from bench.mailplat_side import MailplatServer, mailplat_cmd
from bench.record import Goal, Record, Round
from bench.util import REGISTRY, free_port


@dataclass
class Timed:
    """A command's wall time, peak RSS (ru_maxrss of that child alone) and output."""

    seconds: float
    peak_rss_kb: int
    returncode: int
    output: str

    @property
    def peak_mb(self) -> float:
        return round(self.peak_rss_kb / 1024, 1)


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


def _judge(ctx: Context, rec: Record, t: Timed, args: list[str], good: tuple[int, ...]) -> bool:
    """Mark rec pending/error when the command did not do its job; True when it did."""
    if _no_such_command(t):
        rec.fail(f"`mailplat {args[0]}` does not exist yet", "pending")
    elif t.returncode not in good:
        rec.fail(f"`mailplat {args[0]}` exit {t.returncode}: {t.output[-400:]}")
    else:
        return True
    ctx.log(f"s5 {rec.case:<40} [red]{rec.status}: {rec.notes[-1][:120]}")
    return False


@dataclass(frozen=True)
class ScaleSite:
    """The generated big site, its data dir and the ports written into its site.yaml."""

    site: Path
    data: Path
    smtp_port: int
    pop3_port: int

    def server(self, *extra_args: str) -> MailplatServer:
        return MailplatServer(
            self.site,
            self.data,
            self.smtp_port,
            self.pop3_port,
            log=self.data.parent / "serve.log",
            extra_args=extra_args,
        )


def scale_site(ctx: Context) -> ScaleSite:
    """The generated big site, made once per run (scenarios 5 and 7 share it)."""
    made = ctx.shared.get("scale_site")
    if isinstance(made, ScaleSite):
        return made
    s = ctx.sizes
    root = ctx.work / "scale"
    shutil.rmtree(root, ignore_errors=True)
    smtp_port, pop3_port = free_port(), free_port()
    t0 = time.perf_counter()
    with ctx.busy(f"generating {s.scale_postoffices} po x {s.scale_mailboxes} mbox"):
        site = gen_site.generate(
            root / "site", s.scale_postoffices, s.scale_mailboxes, smtp_port, pop3_port
        )
    ctx.log(
        f"generated {s.scale_postoffices} po x {s.scale_mailboxes} mbox "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    made = ScaleSite(site, root / "data", smtp_port, pop3_port)
    ctx.shared["scale_site"] = made
    return made


def apply_cold(ctx: Context, big: ScaleSite) -> Timed:
    """`mailplat apply --yes` on the never-applied big site (once per run)."""
    t = timed(mailplat_cmd("apply", str(big.site), "--yes", "--data", str(big.data)))
    ctx.shared["scale_applied"] = t
    return t


def scenario_5(ctx: Context) -> list[Record]:
    """Config scale: generated site of P postoffices x M mailboxes; validate, plan, apply, serve."""
    s = ctx.sizes
    label = f"{s.scale_postoffices} po x {s.scale_mailboxes} mbox"
    big = scale_site(ctx)
    site, data = big.site, big.data
    v = Record("5", f"validate, {label}", "s")
    p = Record("5", f"plan (cold), {label}", "s")
    vp = Record(
        "5", f"validate+plan (cold), {label}", "s", target="< 3 s", goal=Goal("mailplat", below=3)
    )
    rss = Record(
        "5",
        f"validate+plan peak RSS, {label}",
        "MB",
        target="< 500 MB peak RSS",
        goal=Goal("mailplat", below=500),
    )
    rows = [v, p, vp, rss]
    for i in range(ctx.rounds):
        cold = data.parent / f"plan-data-{i}"  # never applied: a cold plan every round
        with ctx.busy(f"s5 validate, round {i + 1}/{ctx.rounds}, {label}"):
            tv = timed(mailplat_cmd("validate", str(site)))
        if not _judge(ctx, v, tv, ["validate"], (0,)):
            break
        with ctx.busy(f"s5 plan (cold), round {i + 1}/{ctx.rounds}, {label}"):
            tp = timed(mailplat_cmd("plan", str(site), "--data", str(cold)))
        shutil.rmtree(cold, ignore_errors=True)
        if not _judge(ctx, p, tp, ["plan"], (0, 2)):
            break
        v.add_round(Round(mailplat=tv.seconds, raw={"mailplat": {"peak_rss_mb": tv.peak_mb}}))
        p.add_round(Round(mailplat=tp.seconds, raw={"mailplat": {"peak_rss_mb": tp.peak_mb}}))
        vp.add_round(Round(mailplat=tv.seconds + tp.seconds))
        rss.add_round(Round(mailplat=max(tv.peak_mb, tp.peak_mb)))
        ctx.log(
            f"s5 round {i + 1}: validate {tv.seconds:.2f} s ({tv.peak_mb:.0f} MB), "
            f"plan {tp.seconds:.2f} s ({tp.peak_mb:.0f} MB)"
        )
    for rec in (vp, rss):
        bad = next((r for r in (v, p) if r.status != "ok"), None)
        if bad is not None:
            rec.fail(bad.notes[-1], bad.status)
    # Once: apply cold, plan after it, the server's RSS once listening.
    applied = Record("5", f"apply --yes (cold), {label}", "s")
    with ctx.busy(f"s5 apply --yes (cold), {label}"):
        t = apply_cold(ctx, big)
    if _judge(ctx, applied, t, ["apply"], (0,)):
        applied.add_round(Round(mailplat=t.seconds, raw={"mailplat": {"peak_rss_mb": t.peak_mb}}))
        ctx.log(f"s5 apply --yes (cold)   {t.seconds:6.2f} s, peak RSS {t.peak_mb:.0f} MB")
    after = Record("5", f"plan after apply, {label}", "s")
    serve = Record("5", f"serve: RSS once listening, {label}", "MB")
    rows += [applied, after, serve]
    if applied.status != "ok":
        for rec in (after, serve):
            rec.fail("not measured: apply did not run", applied.status)
        return rows
    with ctx.busy(f"s5 plan after apply, {label}"):
        t = timed(mailplat_cmd("plan", str(site), "--data", str(data)))
    if _judge(ctx, after, t, ["plan"], (0, 2)):
        after.add_round(Round(mailplat=t.seconds, raw={"mailplat": {"peak_rss_mb": t.peak_mb}}))
        ctx.log(f"s5 plan after apply     {t.seconds:6.2f} s, peak RSS {t.peak_mb:.0f} MB")
    serve_rss(ctx, big, serve)
    return rows


def serve_rss(ctx: Context, big: ScaleSite, rec: Record) -> None:
    """RSS of `mailplat serve` a second after it listens, and how long it took to listen."""
    server = big.server()
    start = time.perf_counter()
    try:
        server.start(timeout=600)
        startup = time.perf_counter() - start
        time.sleep(1.0)  # let start-up garbage settle before reading RSS
        mb = round(server.rss_kb() / 1024, 1)
        rec.add_round(Round(mailplat=mb, raw={"mailplat": {"startup_s": round(startup, 3)}}))
        rec.notes.append(f"listening {startup:.1f} s after exec")
        ctx.log(f"s5 serve                 RSS {mb:.0f} MB, listening after {startup:.1f} s")
    except RuntimeError as exc:
        ctx.mailplat_error = str(exc)
        mailplat_failed(ctx, rec)
    finally:
        server.stop()
