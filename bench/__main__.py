"""`python -m bench`: run the scenarios, print one table, write bench/results/<timestamp>.json.

python -m bench                 # everything, the issue's sizes, 3 rounds (make bench)
python -m bench --quick         # 2,000 messages per SMTP case, 3 rounds (make bench-quick)
python -m bench --tiny          # a few messages, 1 round: the harness test
python -m bench --rounds 5      # more rounds per case (each round: mailplat, then the peer)
python -m bench --only 1,3      # some scenarios (numbers or smtp, smtp-big, e2e, pop3, scale,
                                # idle, reload, reload-load)
python -m bench --no-peers      # mailplat only
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.harness import DURABILITY, FULL, QUICK, TINY, Context, Sizes, work_dir
from bench.peers import dovecot, postfix
from bench.record import Record
from bench.report import COLUMNS, cells, footer
from bench.scenarios import ALIASES, SCENARIOS
from bench.util import REGISTRY, loadavg, remove_tree

RESULTS = Path(__file__).resolve().parent / "results"
# Wide enough for the table when the output is a file or a pipe (make, CI logs).
console = Console(highlight=False, log_path=False, width=None if sys.stdout.isatty() else 200)


def environment(sizes: Sizes, rounds: int) -> dict[str, Any]:
    """What the numbers depend on: the machine, the versions, the sizes, the load."""
    repo = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(repo), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "sizes": sizes.name,
        "size_parameters": dataclasses.asdict(sizes),
        "rounds": rounds,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "postfix": postfix.version(),
        "dovecot": dovecot.version(),
        "uvloop": importlib.util.find_spec("uvloop") is not None,
        "mailplat_commit": commit,
        "loadavg_at_start": loadavg(),
    }


def table(report: dict[str, Any], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for name, justify in COLUMNS:
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in report["records"]:
        row = cells(r)
        if r["status"] == "pending":
            row[4] = f"[yellow]{row[4]}"
        elif r["status"] != "ok":
            row[4] = f"[red]{row[4]}"
        if r.get("met") is False:
            row[-1] = f"[red]{row[-1]}"
        t.add_row(*row)
    return t


def rounds_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return n


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2,000 messages per SMTP case")
    size.add_argument("--tiny", action="store_true", help="a few messages (the harness test)")
    p.add_argument(
        "--rounds",
        type=rounds_arg,
        default=None,
        metavar="N",
        help="rounds per case, each mailplat then the peer (default 3; --tiny 1)",
    )
    p.add_argument("--only", default="", help="comma-separated scenarios: 1-8 or their names")
    p.add_argument("--no-peers", action="store_true", help="run the mailplat side only")
    p.add_argument("--results", type=Path, default=RESULTS, help="where <timestamp>.json goes")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (sites, logs)")
    return p.parse_args(argv)


def _stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # Unwind through the finally blocks, so every peer and server is stopped.
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    rounds = args.rounds or sizes.rounds
    chosen = [ALIASES.get(x.strip(), x.strip()) for x in args.only.split(",") if x.strip()]
    unknown = [c for c in chosen if c not in SCENARIOS]
    if unknown:
        console.print(
            f"[red]unknown scenario(s): {', '.join(unknown)}; "
            f"choose from 1-8 or {', '.join(ALIASES)}"
        )
        return 2
    chosen = chosen or list(SCENARIOS)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    env = environment(sizes, rounds)
    work = work_dir()
    ctx = Context(sizes, rounds, work, not args.no_peers, lambda msg: console.log(msg))
    if console.is_terminal:
        ctx.busy = lambda msg: console.status(msg)
    started = dt.datetime.now(dt.UTC)
    la = "/".join(f"{x:.2f}" for x in env["loadavg_at_start"])
    console.print(
        f"[bold]mailplat bench[/] ({sizes.name}, {rounds} round(s) per case): scenarios "
        f"{', '.join(chosen)}; {env['cpu_count']} CPUs, load average {la}, Python "
        f"{env['python']}, postfix {env['postfix'] or '-'}, dovecot {env['dovecot'] or '-'}; "
        f"scratch {work}"
    )
    records: list[Record] = []
    scenarios: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        for key in chosen:
            title = (SCENARIOS[key].__doc__ or "").strip()
            console.rule(f"scenario {key}: {title}")
            meta: dict[str, Any] = {"scenario": key, "title": title, "loadavg_start": loadavg()}
            s0 = time.perf_counter()
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
                meta["loadavg_end"] = loadavg()
                meta["seconds"] = round(time.perf_counter() - s0, 1)
                scenarios.append(meta)
                console.log(
                    f"scenario {key}: {meta['seconds']:.0f} s, load average "
                    + " -> ".join(
                        "/".join(f"{x:.2f}" for x in meta[k])
                        for k in ("loadavg_start", "loadavg_end")
                    )
                )
    finally:
        REGISTRY.stop_all()
        if not args.keep:
            with ctx.busy(f"removing the scratch dir {work}"):
                remove_tree(work)
    elapsed = time.perf_counter() - t0
    report = {
        "started": started.isoformat(),
        "seconds": round(elapsed, 1),
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": env,
        "durability": DURABILITY,
        "scenarios": scenarios,
        "peer_errors": ctx.peer_errors,
        "processes": REGISTRY.started,
        "work_dir": str(work),
        "work_dir_kept": bool(args.keep),
        "records": [r.to_json() for r in records],
    }
    title = f"mailplat bench ({sizes.name}, {rounds} round(s), {elapsed:.0f} s, {env['cpu_count']} CPUs)"
    console.print(table(report, title))
    for line in footer(report):
        console.print(f"  [dim]{line}")
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"results: {out}")
    return 1 if any(r.status == "error" for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
