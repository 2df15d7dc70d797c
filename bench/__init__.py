"""Benchmarks of mailplat side by side with Postfix, Dovecot and smtp-sink (`make bench`).

`python -m bench` runs the scenarios of issues 4 and 10 and prints one table.
Every peer runs privately on loopback high ports under the run's scratch dir
(see `bench.peers`), the SMTP load comes from Postfix's own `smtp-source` for
both sides, and each case runs in interleaved rounds (mailplat, then the peer,
then mailplat again ...) on servers started once per scenario, so a ratio
compares two runs a few seconds apart (see `bench.harness`). Each row reports
the medians, the median per-round ratio and the ranges (`bench.record`);
everything, down to each round's raw numbers and the load average around each
scenario, goes to `bench/results/<timestamp>.json`, which `python -m
bench.report FILE` renders as Markdown.
"""
