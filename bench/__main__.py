"""`python -m bench`: run the scenarios, print one table, write bench/results/<timestamp>.json.

python -m bench                 # everything, the issue's sizes (make bench)
python -m bench --quick         # smaller, under 3 minutes (make bench-quick)
python -m bench --tiny          # a few messages: the harness test
python -m bench --only 1,3      # some scenarios (numbers or smtp, smtp-big, e2e, pop3, scale, idle)
python -m bench --no-peers      # mailplat only
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.peers import dovecot, postfix
from bench.scenarios import (
    ALIASES,
    FULL,
    QUICK,
    SCENARIOS,
    TINY,
    Context,
    Record,
    work_dir,
)
from bench.util import REGISTRY

RESULTS = Path(__file__).resolve().parent / "results"
# Wide enough for the table when the output is a file or a pipe (make, CI logs).
console = Console(highlight=False, log_path=False, width=None if sys.stdout.isatty() else 160)


def environment(sizes: str) -> dict[str, Any]:
    """What the numbers depend on: the machine, the versions, the sizes."""
    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = -1.0
    return {
        "sizes": sizes,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "postfix": postfix.version(),
        "dovecot": dovecot.version(),
        "uvloop": importlib.util.find_spec("uvloop") is not None,
        "mailplat_commit": commit,
        "loadavg_1m_at_start": round(load, 2),
    }


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(records: list[Record], title: str) -> Table:
    """The one table: scenario, case, metric, mailplat, peer, mailplat/peer, smtp-sink, target."""
    t = Table(title=title, title_justify="left")
    for name, justify in [
        ("#", "left"),
        ("case", "left"),
        ("metric", "left"),
        ("mailplat", "right"),
        ("peer", "left"),
        ("peer value", "right"),
        ("mailplat/peer", "right"),
        ("smtp-sink", "right"),
        ("target", "left"),
    ]:
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in records:
        ratio = r.ratio
        ratio_s = "-" if ratio is None else f"{ratio:.2f}"
        if r.status != "ok":
            mailplat_s = f"[yellow]{r.status}" if r.status == "pending" else f"[red]{r.status}"
        else:
            mailplat_s = _num(r.mailplat, 2 if r.metric in ("s", "s / MB") else 1)
        t.add_row(
            r.scenario,
            r.case,
            r.metric,
            mailplat_s,
            r.peer_name,
            _num(r.peer),
            ratio_s,
            _num(r.sink),
            r.target,
        )
    return t


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller run, under 3 minutes")
    size.add_argument("--tiny", action="store_true", help="a few messages (the harness test)")
    p.add_argument("--only", default="", help="comma-separated scenarios: 1-6 or their names")
    p.add_argument("--no-peers", action="store_true", help="run the mailplat side only")
    p.add_argument("--results", type=Path, default=RESULTS, help="where <timestamp>.json goes")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (sites, logs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    chosen = [ALIASES.get(x.strip(), x.strip()) for x in args.only.split(",") if x.strip()]
    unknown = [c for c in chosen if c not in SCENARIOS]
    if unknown:
        console.print(f"[red]unknown scenario(s): {', '.join(unknown)}")
        return 2
    chosen = chosen or list(SCENARIOS)
    env = environment(sizes.name)
    work = work_dir()
    ctx = Context(sizes, work, not args.no_peers, lambda msg: console.log(msg))
    if console.is_terminal:
        ctx.busy = lambda msg: console.status(msg)
    started = dt.datetime.now(dt.UTC)
    console.print(
        f"[bold]mailplat bench[/] ({sizes.name}): scenarios {', '.join(chosen)}; "
        f"{env['cpu_count']} CPUs, Python {env['python']}, postfix {env['postfix'] or '-'}, "
        f"dovecot {env['dovecot'] or '-'}; scratch {work}"
    )
    records: list[Record] = []
    t0 = time.perf_counter()
    try:
        for key in chosen:
            console.rule(f"scenario {key}: {(SCENARIOS[key].__doc__ or '').strip()}")
            try:
                records += SCENARIOS[key](ctx)
            except Exception as exc:  # one broken scenario must not lose the others
                console.print(f"[red]scenario {key} failed: {exc}")
                traceback.print_exc()
                records.append(
                    Record(key, "(scenario failed)", "", status="error", notes=[str(exc)[:500]])
                )
            finally:
                REGISTRY.stop_all()
    finally:
        REGISTRY.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    title = f"mailplat bench ({sizes.name}, {elapsed:.0f} s, {env['cpu_count']} CPUs)"
    console.print(table(records, title))
    for r in records:
        for note in r.notes:
            console.print(f"  [dim]{r.scenario} {r.case}:[/] {note[:300]}")
    for name, err in ctx.peer_errors.items():
        console.print(f"[yellow]{name} not measured: {err[:300]}")
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = args.results / f"{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "seconds": round(elapsed, 1),
                "command": "python -m bench "
                + " ".join(argv if argv is not None else sys.argv[1:]),
                "environment": env,
                "peer_errors": ctx.peer_errors,
                "records": [r.to_json() for r in records],
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"results: {out}")
    return 1 if any(r.status == "error" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
