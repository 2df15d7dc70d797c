"""MX routing against a real DNS server: order, fallback, implicit MX, null MX, NXDOMAIN,
SERVFAIL, slow answers and domain literals. Receivers are real SMTP servers on 127.0.0.x."""

from __future__ import annotations

import random

from mailplat.dns.resolver import Resolver
from tests.outbound.conftest import Harness, dsn_parts
from tests.support_dns import DnsServer, Zone
from tests.support_smtp import Script


def two_mx(zone: Zone, domain: str = "dest.test") -> None:
    zone.mx(domain, (20, "mx2.dest.test"), (10, "mx1.dest.test"))
    zone.a("mx1.dest.test", "127.0.0.2")
    zone.a("mx2.dest.test", "127.0.0.3")


async def test_best_preference_mx_gets_the_mail(harness: Harness) -> None:
    two_mx(harness.zone)
    mx1 = await harness.receiver("127.0.0.2")
    mx2 = await harness.receiver("127.0.0.3")
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert [g.rcpts for g in mx1.got] == [["bob@dest.test"]]
    assert mx2.got == [] and mx2.connections == 0
    assert harness.queued() == [] and harness.notices() == []
    got = mx1.got[0]
    assert got.mail_from == "alice@example.test"
    assert got.helo == "out.example.test"  # EHLO with the configured host name
    assert b"Subject: hello" in got.data


async def test_refused_connection_falls_back_to_next_mx(harness: Harness) -> None:
    two_mx(harness.zone)  # nothing listens on 127.0.0.2
    mx2 = await harness.receiver("127.0.0.3")
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert len(mx2.got) == 1 and harness.queued() == []


async def test_greeting_refusal_and_dropped_session_fall_back(harness: Harness) -> None:
    harness.zone.mx("dest.test", (10, "mx1.dest.test"), (20, "mx2.dest.test"))
    harness.zone.mx("dest.test", (30, "mx3.dest.test"))
    harness.zone.a("mx1.dest.test", "127.0.0.2")
    harness.zone.a("mx2.dest.test", "127.0.0.3")
    harness.zone.a("mx3.dest.test", "127.0.0.4")
    mx1 = await harness.receiver("127.0.0.2", Script(greeting_reply="421 4.3.2 busy"))
    mx2 = await harness.receiver("127.0.0.3", Script(drop_at="mail"))
    mx3 = await harness.receiver("127.0.0.4")
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert mx1.connections == 1 and mx2.connections == 1
    assert len(mx3.got) == 1 and harness.queued() == []


async def test_every_mx_down_defers_with_the_last_error(harness: Harness) -> None:
    two_mx(harness.zone)  # no receivers at all
    rid = await harness.queue(["bob@dest.test"])
    start = harness.clock.now()
    await harness.outbound.drain()
    env = harness.record(rid)
    assert env.attempts == 1
    assert env.next_try == start + 15 * 60
    assert "mx2.dest.test[127.0.0.3]" in env.get("last-error")
    assert harness.notices() == []


async def test_no_mx_uses_the_domain_address(harness: Harness) -> None:
    harness.zone.a("plain.test", "127.0.0.4")
    rx = await harness.receiver("127.0.0.4")
    await harness.queue(["carol@plain.test"])
    await harness.outbound.drain()
    assert [g.rcpts for g in rx.got] == [["carol@plain.test"]]
    assert harness.zone.asked("plain.test")[:2] == ["MX", "A"]


async def test_null_mx_bounces_at_once_without_connecting(harness: Harness) -> None:
    harness.zone.null_mx("nomail.test")
    harness.zone.a("nomail.test", "127.0.0.2")  # must not be used
    rx = await harness.receiver("127.0.0.2")
    await harness.queue(["x@nomail.test"])
    await harness.outbound.drain()
    assert rx.connections == 0
    assert harness.queued() == [] and harness.badmail() == []
    [(env, msg)] = harness.notices()
    assert env.mail_from == "" and env.rcpts == ("alice@example.test",)
    _, [rcpt], _ = dsn_parts(msg)
    assert rcpt["action"] == "failed" and rcpt["status"] == "5.1.10"
    assert "null MX" in rcpt["diagnostic-code"]


async def test_nxdomain_bounces(harness: Harness) -> None:
    await harness.queue(["x@missing.test"])
    await harness.outbound.drain()
    [(_, msg)] = harness.notices()
    _, [rcpt], _ = dsn_parts(msg)
    assert rcpt["status"] == "5.1.2" and "NXDOMAIN" in rcpt["diagnostic-code"]
    assert rcpt["final-recipient"] == "rfc822; x@missing.test"
    assert harness.queued() == []


async def test_servfail_defers_then_delivers_when_dns_recovers(harness: Harness) -> None:
    two_mx(harness.zone)
    harness.zone.servfail("dest.test")
    rx = await harness.receiver("127.0.0.2")
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    env = harness.record(rid)
    assert env.attempts == 1 and "SERVFAIL" in env.get("last-error")
    assert harness.notices() == [] and rx.connections == 0
    harness.zone.heal("dest.test")
    await harness.outbound.drain()  # not due yet: nothing happens
    assert rx.got == []
    harness.clock.advance(15 * 60)
    await harness.outbound.drain()
    assert len(rx.got) == 1 and harness.queued() == []


async def test_slow_dns_is_a_temporary_failure(harness: Harness) -> None:
    two_mx(harness.zone)
    harness.zone.slow("dest.test", 5.0)  # the worker's DNS budget is 0.5 s
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    env = harness.record(rid)
    assert env.attempts == 1 and "timed out" in env.get("last-error")
    assert harness.notices() == []


async def test_mx_host_without_address_is_skipped(harness: Harness) -> None:
    harness.zone.mx("dest.test", (10, "ghost.dest.test"), (20, "mx2.dest.test"))
    harness.zone.a("mx2.dest.test", "127.0.0.3")
    rx = await harness.receiver("127.0.0.3")
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert len(rx.got) == 1


async def test_no_mx_host_with_an_address_bounces(harness: Harness) -> None:
    harness.zone.mx("dest.test", (10, "ghost1.dest.test"), (20, "ghost2.dest.test"))
    await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    [(_, msg)] = harness.notices()
    _, [rcpt], _ = dsn_parts(msg)
    assert rcpt["status"] == "5.4.4"


async def test_domain_literal_goes_straight_to_the_ip(harness: Harness) -> None:
    rx = await harness.receiver("127.0.0.6")
    await harness.queue(["dave@[127.0.0.6]"])
    await harness.outbound.drain()
    assert [g.rcpts for g in rx.got] == [["dave@[127.0.0.6]"]]
    assert harness.zone.queries == []


async def test_equal_preferences_are_shuffled(dns: DnsServer) -> None:
    dns.zone.mx("spread.test", (10, "a.spread.test"), (10, "b.spread.test"), (5, "first.test"))
    resolver = Resolver([dns.address], rng=random.Random(7))
    orders = {tuple(await resolver.mx("spread.test")) for _ in range(20)}
    assert orders == {
        ("first.test", "a.spread.test", "b.spread.test"),
        ("first.test", "b.spread.test", "a.spread.test"),
    }


async def test_ipv6_only_mx_host_is_reached_by_its_aaaa(harness: Harness) -> None:
    harness.zone.mx("six.test", (10, "mx.six.test"))
    harness.zone.aaaa("mx.six.test", "::1")
    rx = await harness.receiver("::1")
    await harness.queue(["eve@six.test"])
    await harness.outbound.drain()
    assert [g.rcpts for g in rx.got] == [["eve@six.test"]]
    assert harness.zone.asked("mx.six.test") == ["A", "AAAA"]
