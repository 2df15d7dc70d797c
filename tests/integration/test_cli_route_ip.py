"""`mailplat route ADDRESS SITE --ip IP`: the client IP must be an IP address.

The installed command: an invalid --ip is one `error:` line and exit 1
(before, 999.1.1.1 was judged as a client); a valid one, IPv4 or IPv6 in any
spelling, is judged as the server would see that peer.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.clirun import EXAMPLE, run_process


@pytest.mark.parametrize("ip", ["999.1.1.1", "1.2.3", "localhost", "", "127.0.0.1/8", "::g"])
def test_an_invalid_ip_is_one_error_line(ip: str) -> None:
    res = run_process("route", "friend@elsewhere.test", EXAMPLE, "--ip", ip)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout == "" and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [
        f"error: --ip {ip!r} is not an IP address, e.g. 203.0.113.1 or 2001:db8::1"
    ]


def test_a_valid_ip_is_judged_as_the_peer_it_names() -> None:
    inside = run_process("route", "friend@elsewhere.test", EXAMPLE, "--ip", "127.0.0.1", "--json")
    assert inside.returncode == 0, inside.stderr
    assert json.loads(inside.stdout)["relay"]["allowed"] is True
    v6 = run_process("route", "friend@elsewhere.test", EXAMPLE, "--ip", "0:0::0:1", "--json")
    assert v6.returncode == 3, v6.stderr
    assert json.loads(v6.stdout)["relay"]["client"]["ip"] == "::1"
