"""The scenarios of issues 4 and 10 by number and by name, in the order a run takes them.

Each scenario is a function (Context) -> list[Record]: it starts the servers
it needs, runs its cases in interleaved rounds (bench.harness) and stops them
in a `finally` (the REGISTRY stops anything left over at exit).

| # | name        | what                                                              |
|---|-------------|-------------------------------------------------------------------|
| 1 | smtp        | accept 1 KiB at 1/10/50 sessions vs Postfix accept-only           |
| 2 | smtp-big    | 64 KiB at 1/10/50 and 1 KiB x 10 recipients, both delivering       |
| 3 | e2e         | end to end into Maildir, 1 KiB, 10 sessions; CPU per message       |
| 4 | pop3        | POP3 RETR, 20 mailboxes x 250, 20 clients vs Dovecot               |
| 5 | scale       | validate + plan 10,000 x 10 cold; apply; serve RSS                 |
| 6 | idle        | memory per idle SMTP session vs Postfix                           |
| 7 | reload      | one-line change live at 10,000 x 10 vs postfix reload             |
| 8 | reload-load | 10 senders during 20 applies vs 20 postfix reloads                |
"""

from __future__ import annotations

from collections.abc import Callable

from bench.harness import Context
from bench.idle_scenario import scenario_6
from bench.pop3_scenario import scenario_4
from bench.record import Record
from bench.reload_scenarios import scenario_7, scenario_8
from bench.scale_scenario import scenario_5
from bench.smtp_scenarios import scenario_1, scenario_2, scenario_3

SCENARIOS: dict[str, Callable[[Context], list[Record]]] = {
    "1": scenario_1,
    "2": scenario_2,
    "3": scenario_3,
    "4": scenario_4,
    "5": scenario_5,
    "6": scenario_6,
    "7": scenario_7,
    "8": scenario_8,
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
