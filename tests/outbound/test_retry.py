"""The retry ladder, giving up (max retries, lifetime) into badmail with an NDR, delay
notices, and the null sender / no_ndr rules. Time moves by a FakeClock, never by sleeping."""

from __future__ import annotations

import pytest

from tests.outbound.conftest import Harness, dsn_parts
from tests.support_smtp import Receiver, Script

MIN = 60.0


def busy(address: str) -> str:
    return "451 4.3.0 Temporary local problem"


async def deferring_mx(h: Harness) -> Receiver:
    h.zone.mx("dest.test", (10, "mx1.dest.test"))
    h.zone.a("mx1.dest.test", "127.0.0.2")
    return await h.receiver("127.0.0.2", Script(rcpt_reply=busy))


async def test_full_retry_ladder_then_badmail_and_ndr(harness: Harness) -> None:
    harness.configure({"delivery": {"retry_minutes": [15, 30, 60, 240], "max_retries": 5}})
    rx = await deferring_mx(harness)
    rid = await harness.queue(["bob@dest.test"])
    start = harness.clock.now()
    expected_gaps = [15, 30, 60, 240, 240]
    tried_at = []
    for attempt, gap in enumerate(expected_gaps, start=1):
        await harness.outbound.drain()
        tried_at.append(harness.clock.now() - start)
        env = harness.record(rid)
        assert env.attempts == attempt
        assert env.next_try == harness.clock.now() + gap * MIN
        # One minute early: nothing is tried.
        harness.clock.advance(gap * MIN - MIN)
        before = rx.connections
        await harness.outbound.drain()
        assert rx.connections == before
        harness.clock.advance(MIN)
    assert tried_at == [0, 15 * MIN, 45 * MIN, 105 * MIN, 345 * MIN]
    # Attempt 6 is the 5th retry: max_retries reached, the message is given up.
    await harness.outbound.drain()
    assert rx.connections == 6
    assert harness.queued() == []
    [bad] = harness.badmail()
    env = harness.record(bad, "badmail")
    assert env.rcpts == ("bob@dest.test",) and env.attempts == 6
    assert "gave up after 6 attempts" in env.get("badmail")
    assert env.get("queue") == "smtp"
    assert "451 4.3.0" in env.get("last-error")
    [(_, ndr)] = harness.notices()
    assert ndr["Subject"] == "Undelivered Mail Returned to Sender"
    _, [rcpt], _ = dsn_parts(ndr)
    assert rcpt["action"] == "failed"
    assert rcpt["status"] == "4.3.0"
    assert rcpt["diagnostic-code"] == "smtp; 451 4.3.0 Temporary local problem"


async def test_lifetime_expiry_moves_to_badmail_and_tells_the_sender(harness: Harness) -> None:
    harness.configure({"delivery": {"retry_minutes": [20], "lifetime_hours": 1}})
    rx = await deferring_mx(harness)
    rid = await harness.queue(["bob@dest.test"])
    for _ in range(3):  # at 0, 20 and 40 minutes
        await harness.outbound.drain()
        assert harness.record(rid).get("badmail") == ""
        harness.clock.advance(20 * MIN)
    await harness.outbound.drain()  # at 60 minutes: the lifetime is over
    assert rx.connections == 4
    assert harness.queued() == []
    env = harness.record(rid, "badmail")
    assert "lifetime of 1 hours expired" in env.get("badmail")
    [(ndr_env, ndr)] = harness.notices()
    assert ndr_env.rcpts == ("alice@example.test",)
    _, [rcpt], headers = dsn_parts(ndr)
    assert rcpt["action"] == "failed" and "Subject: hello" in headers


@pytest.mark.parametrize(
    ("mode", "after", "expected"),
    [
        ("off", 0, [False, False, False]),
        ("first", 0, [True, False, False]),
        ("each", 0, [True, True, True]),
        ("first", 10, [False, True, False]),  # only once the message is 10 minutes old
    ],
)
async def test_delay_notices(harness: Harness, mode: str, after: int, expected: list[bool]) -> None:
    harness.configure(
        {
            "delivery": {
                "retry_minutes": [15],
                "delay_notifications": {"mode": mode, "after_minutes": after},
            }
        }
    )
    await deferring_mx(harness)
    await harness.queue(["bob@dest.test"])
    sent = []
    for _ in expected:
        before = len(harness.notices())
        await harness.outbound.drain()
        sent.append(len(harness.notices()) > before)
        harness.clock.advance(15 * MIN)
    assert sent == expected
    for env, notice in harness.notices():
        assert env.mail_from == ""
        assert notice["Subject"] == "Delayed Mail (still being retried)"
        _, [rcpt], _ = dsn_parts(notice)
        assert rcpt["action"] == "delayed" and rcpt["status"] == "4.3.0"
        assert "will-retry-until" in rcpt


async def test_null_sender_failure_goes_to_badmail_never_bounced(harness: Harness) -> None:
    harness.zone.mx("dest.test", (10, "mx1.dest.test"))
    harness.zone.a("mx1.dest.test", "127.0.0.2")
    await harness.receiver("127.0.0.2", Script(rcpt_reply=lambda a: "550 5.1.1 unknown"))
    rid = await harness.queue(["bob@dest.test"], mail_from="")
    await harness.outbound.drain()
    assert harness.notices() == []
    assert harness.queued() == []
    env = harness.record(rid, "badmail")
    assert "sender was not notified" in env.get("badmail")
    assert "550 5.1.1 unknown" in env.get("last-error")


async def test_null_sender_expiry_goes_to_badmail_without_ndr(harness: Harness) -> None:
    harness.configure(
        {
            "delivery": {
                "retry_minutes": [30],
                "lifetime_hours": 1,
                "delay_notifications": {"mode": "each", "after_minutes": 0},
            }
        }
    )
    await deferring_mx(harness)
    rid = await harness.queue(["bob@dest.test"], mail_from="")
    for _ in range(3):
        await harness.outbound.drain()
        harness.clock.advance(30 * MIN)
    assert harness.notices() == []  # no delay notice either
    env = harness.record(rid, "badmail")
    assert "lifetime" in env.get("badmail")


async def test_null_sender_partial_failure_keeps_the_failed_for_badmail(harness: Harness) -> None:
    harness.zone.mx("dest.test", (10, "mx1.dest.test"))
    harness.zone.a("mx1.dest.test", "127.0.0.2")

    def replies(address: str) -> str | None:
        return "550 5.1.1 unknown" if address.startswith("bad") else "451 4.3.0 later"

    rx = await harness.receiver("127.0.0.2", Script(rcpt_reply=replies))
    rid = await harness.queue(["bad@dest.test", "slow@dest.test"], mail_from="")
    await harness.outbound.drain()
    env = harness.record(rid)
    assert env.rcpts == ("slow@dest.test",)
    assert env.get("failed:bad@dest.test").startswith("5.1.1 smtp; 550")
    rx.script.rcpt_reply = lambda a: None  # the slow one now gets through
    harness.clock.advance(15 * MIN)
    await harness.outbound.drain()
    assert [g.rcpts for g in rx.got] == [["slow@dest.test"]]
    bad = harness.record(rid, "badmail")
    assert bad.rcpts == ("bad@dest.test",)
    assert harness.notices() == []


async def test_no_ndr_switch_sends_no_report(harness: Harness) -> None:
    harness.configure({"delivery": {"no_ndr": True}})
    harness.zone.mx("dest.test", (10, "mx1.dest.test"))
    harness.zone.a("mx1.dest.test", "127.0.0.2")
    await harness.receiver("127.0.0.2", Script(rcpt_reply=lambda a: "550 5.1.1 unknown"))
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert harness.notices() == []
    assert harness.record(rid, "badmail").rcpts == ("bob@dest.test",)


async def test_one_message_gets_one_report_per_attempt(harness: Harness) -> None:
    # Many failing recipients: one DSN listing them all, not one DSN each.
    await harness.queue([f"u{n}@missing.test" for n in range(20)])
    await harness.outbound.drain()
    [(_, ndr)] = harness.notices()
    _, rcpts, _ = dsn_parts(ndr)
    assert len(rcpts) == 20
