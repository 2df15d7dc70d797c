"""Queue management helpers (what `mailplat queue|badmail ...` will call in the server):
list, show, retry now, delete (to badmail), bounce now, resend from badmail."""

from __future__ import annotations

import pytest

from mailplat.connectors.smtp_out import manage
from tests.outbound.conftest import Harness, dsn_parts, message
from tests.support_smtp import Receiver, Script


async def deferring(h: Harness) -> Receiver:
    h.zone.mx("dest.test", (10, "mx1.dest.test"))
    h.zone.a("mx1.dest.test", "127.0.0.2")
    return await h.receiver("127.0.0.2", Script(rcpt_reply=lambda a: "451 4.3.0 busy"))


async def test_list_and_show(harness: Harness) -> None:
    await deferring(harness)
    data = message(subject="listed")
    rid = await harness.queue(["bob@dest.test"], data=data)
    await harness.outbound.drain()
    harness.clock.advance(60)
    [entry] = manage.entries(harness.spool)
    assert entry.id == rid and entry.sender == "alice@example.test"
    assert entry.rcpts == ("bob@dest.test",) and entry.size == len(data)
    assert entry.attempts == 1 and "451 4.3.0 busy" in entry.last_error
    assert entry.busy is False
    js = entry.to_json(harness.clock.now())
    assert js["age_seconds"] == 60.0 and js["next_try"] == entry.next_try
    _, env, headers = manage.show(harness.spool, "smtp", rid)
    assert b"Subject: listed" in headers and env.get("last-attempt")
    with pytest.raises(manage.NotFound):
        manage.show(harness.spool, "smtp", "nope.0")


async def test_retry_now_skips_the_wait(harness: Harness) -> None:
    rx = await deferring(harness)
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    rx.script.rcpt_reply = None
    await harness.outbound.drain()
    assert rx.got == []  # still waiting for its retry time
    assert await manage.retry(harness.spool, [rid], harness.clock.now()) == [rid]
    await harness.outbound.drain()
    assert len(rx.got) == 1 and harness.queued() == []


async def test_actions_on_a_record_being_delivered_say_busy(harness: Harness) -> None:
    rid = await harness.queue(["bob@dest.test"])
    other = await harness.queue(["carol@dest.test"])
    assert harness.spool.claim("smtp", rid)  # as a delivery worker holds it
    try:
        with pytest.raises(manage.Busy):
            await manage.retry(harness.spool, [rid], harness.clock.now())
        with pytest.raises(manage.Busy):
            await manage.delete(harness.spool, "smtp", rid, harness.clock.now())
        assert await manage.retry(harness.spool, None, harness.clock.now()) == [other]
        assert [e.busy for e in manage.entries(harness.spool)] == [True, False]
    finally:
        harness.spool.release("smtp", rid)


async def test_delete_moves_to_badmail_and_only_badmail_deletes(harness: Harness) -> None:
    rid = await harness.queue(["bob@dest.test"])
    now = harness.clock.now()
    assert await manage.delete(harness.spool, "smtp", rid, now) == "badmail"
    assert harness.queued() == [] and harness.badmail() == [rid]
    assert "deleted by the administrator" in harness.record(rid, "badmail").get("badmail")
    assert await manage.delete(harness.spool, "badmail", rid, now) == "deleted"
    assert harness.badmail() == []
    assert not any(harness.spool.stats().values())  # the message itself is gone too


async def test_bounce_now_returns_the_message(harness: Harness) -> None:
    rid = await harness.queue(["bob@dest.test"])
    result = await manage.bounce(
        harness.spool, harness.directory(), harness.spool.receive, rid, harness.clock.now()
    )
    assert result == "bounced" and harness.queued() == []
    [(env, ndr)] = harness.notices()
    assert env.rcpts == ("alice@example.test",)
    _, [rcpt], _ = dsn_parts(ndr)
    assert rcpt["status"] == "5.0.0" and "administrator" in rcpt["diagnostic-code"]


async def test_bounce_of_a_null_sender_message_parks_it(harness: Harness) -> None:
    rid = await harness.queue(["bob@dest.test"], mail_from="")
    result = await manage.bounce(
        harness.spool, harness.directory(), harness.spool.receive, rid, harness.clock.now()
    )
    assert result == "badmail" and harness.notices() == [] and harness.badmail() == [rid]


async def test_resend_from_badmail_starts_over(harness: Harness) -> None:
    harness.configure({"delivery": {"max_retries": 0}})
    rx = await deferring(harness)
    rid = await harness.queue(["bob@dest.test"])
    await harness.outbound.drain()
    assert harness.badmail() == [rid]
    rx.script.rcpt_reply = None
    assert await manage.resend(harness.spool, rid, harness.spool.receive, harness.clock.now()) == (
        "smtp"
    )
    env = harness.record(rid)
    assert env.attempts == 0 and env.get("badmail") == "" and env.get("last-error") == ""
    await harness.outbound.drain()
    assert len(rx.got) == 1 and harness.badmail() == [] and harness.queued() == []


async def test_resend_of_unrouted_badmail_routes_it_again(harness: Harness) -> None:
    from mailplat.core.envelope import Envelope

    env = Envelope("alice@example.test", ("ghost@example.test",), "T1", harness.clock.now())
    msg_id = await harness.spool.receive(env, message())
    await harness.spool.route(msg_id, [("badmail", env.with_meta("badmail", "no destination"))])
    rid = f"{msg_id}.0"
    result = await manage.resend(harness.spool, rid, harness.spool.receive, harness.clock.now())
    assert result == "incoming" and harness.badmail() == []
    [queued] = harness.spool.incoming()
    again, _ = harness.spool.read_incoming(queued)
    assert again.rcpts == ("ghost@example.test",) and again.get("badmail") == ""
