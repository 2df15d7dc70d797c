"""Fixtures every test folder may use: a real DNS server on 127.0.0.1 and its zone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support_dns import DnsServer, Zone


@pytest.fixture
def zone() -> Zone:
    """The records the test DNS server answers with; tests add to it."""
    return Zone()


@pytest.fixture
def dns(zone: Zone) -> Iterator[DnsServer]:
    """A real UDP/TCP DNS server on a free 127.0.0.1 port serving `zone`."""
    with DnsServer(zone) as server:
        yield server
