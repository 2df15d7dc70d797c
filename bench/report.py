"""Render a bench results JSON as the Markdown table the README shows (and the console's cells).

python -m bench.report bench/results/<timestamp>.json

Every row shows its rounds, mailplat's median and min-max, the peer's median,
the median of the per-round ratios and their min-max, the smtp-sink floor,
the target and whether it is met. Under the table: how to read the ratios,
the durability both sides had, the load average at the start and end of each
scenario, and every row's notes (pending and error rows say why there).
`bench.__main__` prints the same cells with rich, so the two never disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLUMNS: list[tuple[str, str]] = [
    ("#", "left"),
    ("case", "left"),
    ("metric", "left"),
    ("n", "right"),  # rounds
    ("mailplat", "right"),
    ("range", "right"),
    ("peer", "left"),
    ("peer value", "right"),
    ("ratio", "right"),
    ("ratio range", "right"),
    ("sink", "right"),
    ("target", "left"),
    ("met", "left"),
]

READING = (
    "n rounds per case, each running mailplat, then the peer right after it (then smtp-sink, "
    "the floor); mailplat, peer value and sink are medians over the rounds, ratio is the "
    "median of the per-round ratios mailplat/peer, and the ranges are min to max over the "
    "rounds. Above 1.0 is better for rates, below 1.0 for times, memory and CPU."
)


def num(value: Any) -> str:
    """A value for the table: thousands separators, fewer decimals as numbers grow."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) < 10:
            return f"{value:,.2f}"
        if abs(value) < 1000:
            return f"{value:,.1f}"
        return f"{value:,.0f}"
    return str(value)


def span(values: list[float] | None, ratio: bool = False) -> str:
    if not values:
        return "-"
    lo, hi = values
    return f"{lo:.2f} to {hi:.2f}" if ratio else f"{num(float(lo))} to {num(float(hi))}"


def cells(r: dict[str, Any]) -> list[str]:
    """The table cells of one record (the JSON form), in COLUMNS order."""
    ok = r["status"] == "ok"
    ratio = r.get("ratio")
    met = r.get("met")
    return [
        r["scenario"],
        r["case"],
        r["metric"],
        str(r.get("rounds_run", 0)),
        num(r["mailplat"]) if ok or r["mailplat"] is not None else r["status"],
        span(r.get("mailplat_range")),
        r["peer_name"] or "-",
        num(r["peer"]),
        "-" if ratio is None else f"{ratio:.2f}",
        span(r.get("ratio_range"), ratio=True),
        num(r.get("sink")),
        r["target"] or "-",
        r["status"] if not ok else "-" if met is None else "yes" if met else "no",
    ]


def load_lines(report: dict[str, Any]) -> list[str]:
    """The load average at the start and end of each scenario (1/5/15 minutes)."""

    def fmt(la: list[float]) -> str:
        return "/".join(f"{x:.2f}" for x in la)

    env = report["environment"]
    parts = [f"at start {fmt(env['loadavg_at_start'])}"]
    for s in report.get("scenarios", []):
        parts.append(
            f"scenario {s['scenario']} {fmt(s['loadavg_start'])} -> {fmt(s['loadavg_end'])}"
        )
    return [f"Load average (1/5/15 min, {env['cpu_count']} CPUs): " + "; ".join(parts) + "."]


def footer(report: dict[str, Any]) -> list[str]:
    """The lines under the table: reading, durability, load, notes, peers not measured."""
    lines = [READING, report.get("durability", ""), *load_lines(report)]
    for r in report["records"]:
        for note in r.get("notes", []):
            lines.append(f"{r['scenario']} {r['case']}: {note[:300]}")
    for name, err in report.get("peer_errors", {}).items():
        lines.append(f"{name} not measured: {err[:300]}")
    return [ln for ln in lines if ln]


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    dovecot = (env.get("dovecot") or "-").split()[0]
    lines = [
        f"`{report.get('command', 'python -m bench')}` ({env['sizes']} sizes, "
        f"{env.get('rounds', '?')} rounds, {report.get('seconds', '?')} s), "
        f"{env['cpu_count']} CPUs, Python {env['python']}, Postfix {env['postfix'] or '-'}, "
        f"Dovecot {dovecot}, commit {env['mailplat_commit']}.",
        "",
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "|".join("---:" if just == "right" else "---" for _, just in COLUMNS) + "|",
    ]
    for r in report["records"]:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |")
    lines += ["", *[f"- {ln}" for ln in footer(report)]]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 1
    try:
        report = json.loads(Path(argv[0]).read_text())
        out = markdown(report)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot render {argv[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
