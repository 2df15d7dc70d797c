"""Benchmarks of mailplat side by side with Postfix, Dovecot and smtp-sink (`make bench`).

`python -m bench` runs every scenario of issue 4 and prints one table; every
peer runs privately on loopback high ports (see `bench.peers`), the SMTP load
comes from Postfix's own `smtp-source` for both sides, and each result is a
ratio mailplat/peer taken in the same run. Results also go to
`bench/results/<timestamp>.json`.
"""
