"""Password verification from many threads at once (POP3 logins run in worker threads)."""

from __future__ import annotations

import subprocess
import sys

STORED = "$6$uikgpwnxZNkD92PB$tuiQ2c16ndwWdTAFDtUBD4eroB2pP9kEdL7jPXBy3v0ZGJRwh1T8XHr6m87wEQfTIG6g78oZ2RpObaGq9Xa6d."
CHILD = r"""
from concurrent.futures import ThreadPoolExecutor
from mailplat.auth.passwords import verify_password
stored = STORED  # SHA512-crypt of "secret", 5000 rounds; passlib not touched yet
with ThreadPoolExecutor(32) as pool:
    results = list(pool.map(lambda _: verify_password(stored, "secret"), range(32)))
assert all(results), results
print("ok")
"""


def test_first_sha512_crypt_verifications_race_safely() -> None:
    # A fresh interpreter, so the first lookup of passlib's lazy names happens
    # in 32 threads at once, as in a server's first burst of POP3 logins.
    child = CHILD.replace("STORED", repr(STORED))
    res = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
