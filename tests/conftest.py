"""Fixtures every test folder may use: a real DNS server on 127.0.0.1 and its zone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

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


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Tests marked `both_loops` run once on asyncio's loop and once on uvloop's.

    Refusal paths differ between the two (uvloop's transports are not asyncio
    classes), so every refusal is proven on both, as `mailplat serve` uses uvloop.
    """
    if item.get_closest_marker("both_loops"):
        import uvloop

        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}
