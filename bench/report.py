"""Render a bench results JSON as the Markdown table the README shows.

python -m bench.report bench/results/<timestamp>.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"`{report.get('command', 'python -m bench')}` ({env['sizes']} sizes), "
        f"{env['cpu_count']} CPUs, Python {env['python']}, Postfix {env['postfix']}, "
        f"Dovecot {env['dovecot'].split()[0]}, commit {env['mailplat_commit']}.",
        "",
        "| # | case | metric | mailplat | peer | peer value | mailplat/peer | target |",
        "|---|------|--------|---------:|------|-----------:|--------------:|--------|",
    ]
    for r in report["records"]:
        ratio = r.get("ratio")
        lines.append(
            f"| {r['scenario']} | {r['case']} | {r['metric']} | {_num(r['mailplat'])} | "
            f"{r['peer_name'] or '-'} | {_num(r['peer'])} | "
            f"{'-' if ratio is None else f'{ratio:.2f}'} | {r['target']} |"
        )
    notes = [f"{r['scenario']}: {n}" for r in report["records"] for n in r.get("notes", [])]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 1
    sys.stdout.write(markdown(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
