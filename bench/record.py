"""One result row of the bench: every round of both sides, their medians, ranges and the verdict.

A `Record` is one case of one scenario (a line of the table, an object in the
JSON). Its `rounds` hold what each pass measured: the mailplat value, the
peer's value taken right after it (A B A B ...), the smtp-sink floor when
there is one, and the raw numbers behind them. Everything shown is derived
from the rounds: each side's median and min-max, the median of the per-round
ratios mailplat/peer and their min-max, and whether the target is met.

Ratios pair the two sides of the same round only, so a load spike on the
shared machine moves one ratio, not the median.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SIDES = ("mailplat", "peer", "sink")


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def span(values: Sequence[float]) -> list[float] | None:
    """[min, max], or None for no values."""
    return [min(values), max(values)] if values else None


@dataclass
class Round:
    """One pass of a case: mailplat, then the peer, then the floor (each None when not run)."""

    mailplat: float | None = None
    peer: float | None = None
    sink: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # side -> that run's own numbers

    @property
    def ratio(self) -> float | None:
        if self.mailplat is None or not self.peer:
            return None
        return self.mailplat / self.peer

    def to_json(self) -> dict[str, Any]:
        return {
            "mailplat": self.mailplat,
            "peer": self.peer,
            "sink": self.sink,
            "ratio": self.ratio,
            "raw": self.raw,
        }


@dataclass(frozen=True)
class Goal:
    """How a row's target is judged: the ratio or mailplat's own median against a bound."""

    on: Literal["ratio", "mailplat"]
    at_least: float | None = None
    below: float | None = None

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        if self.at_least is not None and value < self.at_least:
            return False
        return not (self.below is not None and value >= self.below)


RATIO_AT_LEAST_1 = Goal("ratio", at_least=1.0)


@dataclass
class Record:
    """One line of the table and of the JSON."""

    scenario: str
    case: str
    metric: str
    peer_name: str = ""
    target: str = ""
    goal: Goal | None = None
    status: str = "ok"  # ok | pending | error | skipped
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)
    # Set by a scenario whose target is more than one bound (0 failed, 0 lost, dip < 10%).
    verdict: bool | None = None

    def values(self, side: str) -> list[float]:
        return [v for r in self.rounds if (v := getattr(r, side)) is not None]

    def ratios(self) -> list[float]:
        return [v for r in self.rounds if (v := r.ratio) is not None]

    @property
    def mailplat(self) -> float | None:
        return median(self.values("mailplat"))

    @property
    def peer(self) -> float | None:
        return median(self.values("peer"))

    @property
    def sink(self) -> float | None:
        return median(self.values("sink"))

    @property
    def ratio(self) -> float | None:
        """Median of the per-round ratios (not the ratio of the medians)."""
        return median(self.ratios())

    @property
    def met(self) -> bool | None:
        """True/False against the target; None when there is no target or nothing to judge."""
        if self.status != "ok":
            return None
        if self.verdict is not None:
            return self.verdict
        if self.goal is None:
            return None
        return self.goal.met(self.ratio if self.goal.on == "ratio" else self.mailplat)

    def add_round(self, rnd: Round) -> Round:
        self.rounds.append(rnd)
        return rnd

    def fail(self, note: str, status: str = "error") -> None:
        """Mark the row as not measured (pending: not built yet; error: broken) with the reason."""
        self.status = status
        self.notes.append(note)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "case": self.case,
            "metric": self.metric,
            "peer_name": self.peer_name,
            "target": self.target,
            "status": self.status,
            "met": self.met,
            "rounds_run": len(self.rounds),
        }
        for side in SIDES:
            vals = self.values(side)
            out[side] = median(vals)
            out[f"{side}_range"] = span(vals)
        out["ratio"] = self.ratio
        out["ratio_range"] = span(self.ratios())
        out["goal"] = None if self.goal is None else asdict(self.goal)
        out["notes"] = self.notes
        out["extra"] = self.extra
        out["rounds"] = [r.to_json() for r in self.rounds]
        return out
