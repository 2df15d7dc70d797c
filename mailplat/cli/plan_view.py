"""Render a Plan and its Effects: Terraform-style `+ ~ -` text, or JSON.

Input: Plan (reconcile.diff), Effects (reconcile.effects), the applied
Generation. Output: lines on the console, or one JSON-able dict; both come
from the same data, so text and JSON never disagree. Password hashes are
shown as "(sensitive)".
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.console import Console

from mailplat.reconcile.diff import Change, Plan
from mailplat.reconcile.effects import Effects
from mailplat.reconcile.state import Generation

COLOURS = {"+": "green", "~": "yellow", "-": "red"}
SENSITIVE = "(sensitive)"
MAX_LISTED = 25  # Maildir lines shown before "... and N more" (JSON has all)
MAX_CHANGES = 500  # object and routing lines shown before a per-kind summary


def _redact(value: Any, key: str = "") -> Any:
    if key.split(".")[-1] == "password" and value is not None:
        return SENSITIVE
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _short(value: Any) -> str:
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)


def summary_line(plan: Plan, fx: Effects) -> str:
    if plan.empty and not fx.actionable:
        return "No changes. The applied configuration matches the working tree."
    text = (
        f"Plan: {plan.count('+')} to add, {plan.count('~')} to change, {plan.count('-')} to remove."
    )
    if plan.empty:
        text += f" ({len(fx.maildirs)} missing Maildir(s) to create.)"
    return text


def has_work(plan: Plan, fx: Effects) -> bool:
    return not plan.empty or fx.actionable


def change_to_json(change: Change) -> dict[str, Any]:
    return {
        "action": change.action,
        "kind": change.kind,
        "name": change.name,
        "before": _redact(change.before),
        "after": _redact(change.after),
        "fields": [
            {
                "path": f.path,
                "before": _redact(f.before, f.path),
                "after": _redact(f.after, f.path),
            }
            for f in change.fields
        ],
    }


def plan_to_json(plan: Plan, fx: Effects, applied: Generation | None) -> dict[str, Any]:
    return {
        "ok": True,
        "changes_pending": has_work(plan, fx),
        "applied": (
            None
            if applied is None
            else {
                "number": applied.number,
                "digest": applied.digest,
                "applied_at": applied.applied_at,
                "applied_by": applied.applied_by,
            }
        ),
        "digest": plan.new_digest,
        "summary": {
            "add": plan.count("+"),
            "change": plan.count("~"),
            "remove": plan.count("-"),
        },
        "changes": [change_to_json(c) for c in plan.changes],
        "effects": {
            "maildirs_to_create": [
                {"mailbox": m.mailbox, "path": str(m.path), "welcome": m.welcome}
                for m in fx.maildirs
            ],
            "kept_mail": [
                {"mailbox": k.mailbox, "path": str(k.path), "messages": k.messages} for k in fx.kept
            ],
            "rebind_listeners": list(fx.rebind),
            "warnings": list(fx.warnings),
        },
        "routing": [
            {"address": r.address, "before": list(r.before), "after": list(r.after)}
            for r in plan.routing
        ],
        "notes": list(plan.notes),
        "text": summary_line(plan, fx),
    }


def _dest(labels: tuple[str, ...]) -> str:
    return ", ".join(labels) if labels else "(nowhere)"


def _signers(domain: Any) -> tuple[list[str], list[str]]:
    """(selectors that sign, selectors only published) of a domain as the plan holds it."""
    dkim = domain.get("dkim") if isinstance(domain, dict) else None
    keys = dkim.get("keys", []) if isinstance(dkim, dict) else []
    signing = [k["selector"] for k in keys if k.get("sign", True)]
    return signing, [k["selector"] for k in keys if not k.get("sign", True)]


def dkim_signing(change: Change) -> str:
    """For a domain whose DKIM keys change: which selectors sign after it, and before."""
    if change.kind != "domain" or not any(f.path.startswith("dkim") for f in change.fields):
        return ""
    now, published = _signers(change.after)
    was, _ = _signers(change.before)
    text = f"signs with {', '.join(now)}" if now else "does not sign"
    if was != now:
        text += f" (was: {', '.join(was) or 'not signing'})"
    if published:
        text += f"; published, not signing yet: {', '.join(published)}"
    return text


def render_plan(console: Console, plan: Plan, fx: Effects, applied: Generation | None) -> None:
    """The human plan: objects, effects, routing diff, summary line."""
    if applied is None:
        console.print("[dim]Nothing applied yet in this data root: everything is new.[/]")
    else:
        console.print(
            f"[dim]Comparing the working tree with generation {applied.number} "
            f"(applied {applied.applied_at} by {applied.applied_by}).[/]"
        )
    if plan.changes:
        console.print()
        for change in plan.changes[:MAX_CHANGES]:
            colour = COLOURS[change.action]
            console.print(
                f"  [{colour}]{change.action}[/] {change.kind} [bold]{change.name}[/]",
                highlight=False,
            )
            for f in change.fields:
                before = _short(_redact(f.before, f.path))
                after = _short(_redact(f.after, f.path))
                console.print(f"      {f.path}: {before} [yellow]→[/] {after}", highlight=False)
            signing = dkim_signing(change)
            if signing:
                console.print(f"      [bold]DKIM:[/] {signing}", highlight=False)
        if len(plan.changes) > MAX_CHANGES:
            # Thousands of lines help nobody and rich takes seconds to lay them out.
            rest = Counter(f"{c.action} {c.kind}" for c in plan.changes[MAX_CHANGES:])
            console.print(
                f"  ... and {len(plan.changes) - MAX_CHANGES} more: "
                + ", ".join(f"{n} x {what}" for what, n in sorted(rest.items()))
                + " (`--json` lists every one)",
                highlight=False,
            )
    if fx.maildirs or fx.kept or fx.rebind or fx.warnings:
        console.print("\n[bold]Effects:[/]")
        for m in fx.maildirs[:MAX_LISTED]:
            extra = " (with welcome message)" if m.welcome else ""
            console.print(f"  [green]+[/] Maildir {m.path}{extra}", highlight=False)
        if len(fx.maildirs) > MAX_LISTED:
            console.print(f"  [green]+[/] ... and {len(fx.maildirs) - MAX_LISTED} more Maildirs")
        for k in fx.kept:
            if k.exists:
                console.print(
                    f"  [red]-[/] mailbox {k.mailbox} leaves the config: "
                    f"{k.messages} message(s) kept in {k.path} (nothing is deleted)",
                    highlight=False,
                )
            else:
                console.print(
                    f"  [red]-[/] mailbox {k.mailbox} leaves the config (it had no Maildir)"
                )
        if fx.rebind:
            console.print(f"  [yellow]~[/] listeners to rebind: {', '.join(fx.rebind)}")
        for w in fx.warnings:
            console.print(f"  [bold yellow]! warning:[/] {w}", highlight=False)
    if plan.routing:
        console.print("\n[bold]Routing changes:[/]")
        for r in plan.routing[:MAX_CHANGES]:
            console.print(
                f"  [yellow]~[/] {r.address}: {_dest(r.before)} [yellow]→[/] {_dest(r.after)}",
                highlight=False,
            )
    if len(plan.routing) > MAX_CHANGES:
        console.print(
            f"  ... and {len(plan.routing) - MAX_CHANGES} more (`--json` lists every one)"
        )
    for note in plan.notes:
        console.print(f"[dim]note: {note}[/]")
    console.print()
    colour = "green" if not has_work(plan, fx) else "bold"
    console.print(f"[{colour}]{summary_line(plan, fx)}[/]")
