"""Per-recipient results of one attempt: delivered, deferred, bounced, with the DSN parsed
back by Python's email package; SIZE; drops and stalls; connection sharing; the bytes
we put on the wire."""

from __future__ import annotations

from pathlib import Path

from mailplat.runtime.tls import make_self_signed, server_context
from tests.outbound.conftest import Harness, dsn_parts, message
from tests.support_smtp import Script


def one_mx(h: Harness, *more: tuple[int, str, str]) -> None:
    h.zone.mx("dest.test", (10, "mx1.dest.test"))
    h.zone.a("mx1.dest.test", "127.0.0.2")
    for pref, host, ip in more:
        h.zone.mx("dest.test", (pref, host))
        h.zone.a(host, ip)


def by_local_part(address: str) -> str | None:
    local = address.strip("<>").split("@")[0]
    if local.startswith("bad"):
        return f"550 5.1.1 <{address.strip('<>')}>: Recipient address rejected"
    if local.startswith("later"):
        return "451 4.2.1 Mailbox busy, try later"
    return None


async def test_partial_delivery_retries_only_the_deferred(harness: Harness) -> None:
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2", Script(rcpt_reply=by_local_part))
    rid = await harness.queue(
        ["good@dest.test", "bad@dest.test", "later@dest.test"],
        meta=(("orig:bad@dest.test", "Bad@dest.test"),),
    )
    await harness.outbound.drain()
    assert [g.rcpts for g in rx.got] == [["good@dest.test"]]
    env = harness.record(rid)
    assert env.rcpts == ("later@dest.test",) and env.attempts == 1
    assert "451 4.2.1 Mailbox busy" in env.get("last-error")
    [(bounce_env, dsn)] = harness.notices()
    assert bounce_env.mail_from == "" and bounce_env.rcpts == ("alice@example.test",)
    assert dsn["To"].addresses[0].addr_spec == "alice@example.test"
    assert dsn["Auto-Submitted"] == "auto-replied"
    per_message, [rcpt], headers = dsn_parts(dsn)
    assert "out.example.test" in per_message["reporting-mta"]
    assert rcpt["final-recipient"] == "rfc822; bad@dest.test"
    assert rcpt["original-recipient"] == "rfc822; Bad@dest.test"
    assert rcpt["action"] == "failed"
    assert rcpt["status"] == "5.1.1"
    assert rcpt["remote-mta"] == "dns; mx1.dest.test"
    assert rcpt["diagnostic-code"] == (
        "smtp; 550 5.1.1 <bad@dest.test>: Recipient address rejected"
    )
    assert "Subject: hello" in headers and "Message-ID: <hello@example.test>" in headers
    # The next attempt only names the deferred recipient; the connection now takes it.
    harness.clock.advance(15 * 60)
    rx.script.rcpt_reply = None
    await harness.outbound.drain()
    assert [g.rcpts for g in rx.got] == [["good@dest.test"], ["later@dest.test"]]
    assert harness.queued() == [] and len(harness.notices()) == 1


async def test_reply_to_data_decides_for_every_accepted_recipient(harness: Harness) -> None:
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2", Script(data_reply="554 5.7.1 Message refused"))
    await harness.queue(["a@dest.test", "b@dest.test"])
    await harness.outbound.drain()
    assert harness.queued() == []
    [(_, dsn)] = harness.notices()
    _, rcpts, _ = dsn_parts(dsn)
    assert [r["final-recipient"] for r in rcpts] == ["rfc822; a@dest.test", "rfc822; b@dest.test"]
    assert {r["diagnostic-code"] for r in rcpts} == {"smtp; 554 5.7.1 Message refused"}
    rx.script.data_reply = "452 4.3.1 Insufficient system storage"
    rid = await harness.queue(["c@dest.test"])
    await harness.outbound.drain()
    assert harness.record(rid).attempts == 1 and len(harness.notices()) == 1


async def test_mail_from_refusal_is_per_message(harness: Harness) -> None:
    one_mx(harness)
    await harness.receiver("127.0.0.2", Script(mail_reply="553 5.7.1 Sender rejected"))
    await harness.queue(["a@dest.test"])
    await harness.outbound.drain()
    [(_, dsn)] = harness.notices()
    _, [rcpt], _ = dsn_parts(dsn)
    assert rcpt["status"] == "5.7.1"


async def test_remote_size_limit_bounces_without_trying(harness: Harness) -> None:
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2", Script(size=1000))
    await harness.queue(["a@dest.test"], data=message(body="x" * 70 + "\r\n") * 40)
    await harness.outbound.drain()
    assert rx.got == [] and rx.connections_used == set()  # no MAIL was sent
    [(_, dsn)] = harness.notices()
    _, [rcpt], _ = dsn_parts(dsn)
    assert rcpt["status"] == "5.3.4" and "exceeds the limit 1000" in rcpt["diagnostic-code"]


async def test_size_is_declared_and_fits(harness: Harness) -> None:
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2", Script(size=100_000))
    data = message()
    await harness.queue(["a@dest.test"], data=data)
    await harness.outbound.drain()
    [got] = rx.got
    assert f"SIZE={len(data)}" in got.mail_options


async def test_site_outbound_limit_bounces_without_connecting(harness: Harness) -> None:
    harness.configure({"delivery": {"max_outbound_size_kb": 1}})
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2")
    await harness.queue(["a@dest.test"], data=message(body="y" * 2000))
    await harness.outbound.drain()
    assert rx.connections == 0 and harness.queued() == []
    [(_, dsn)] = harness.notices()
    _, [rcpt], _ = dsn_parts(dsn)
    assert rcpt["status"] == "5.3.4" and "outbound limit of 1 KB" in rcpt["diagnostic-code"]


async def test_connection_lost_after_data_defers_without_trying_other_mx(
    harness: Harness,
) -> None:
    one_mx(harness, (20, "mx2.dest.test", "127.0.0.3"))
    await harness.receiver("127.0.0.2", Script(drop_at="data"))
    mx2 = await harness.receiver("127.0.0.3")
    rid = await harness.queue(["a@dest.test"])
    await harness.outbound.drain()
    # The first MX may have the message: a second copy elsewhere would be a
    # duplicate made on purpose. It waits for the retry instead.
    assert mx2.connections == 0
    env = harness.record(rid)
    assert env.attempts == 1 and "connection lost during DATA" in env.get("last-error")


async def test_stalled_server_times_out_and_defers(harness: Harness) -> None:
    harness.configure({"delivery": {"remote_timeout_seconds": 1}})
    one_mx(harness)
    await harness.receiver("127.0.0.2", Script(stall_at="mail"))
    rid = await harness.queue(["a@dest.test"])
    await harness.outbound.drain()
    env = harness.record(rid)
    assert env.attempts == 1 and "timed out" in env.get("last-error")
    assert harness.notices() == []


async def test_messages_to_one_destination_share_a_connection(harness: Harness) -> None:
    harness.configure({"delivery": {"per_destination": 1}})
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2")
    for n in range(5):
        await harness.queue([f"u{n}@dest.test"], data=message(subject=f"m{n}"))
    await harness.outbound.drain()
    assert len(rx.got) == 5
    assert rx.connections == 1
    assert harness.queued() == []


async def test_per_destination_limit_caps_parallel_connections(harness: Harness) -> None:
    harness.configure({"delivery": {"per_destination": 2}})
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2")
    for n in range(6):
        await harness.queue([f"u{n}@dest.test"], data=message(subject=f"m{n}"))
    await harness.outbound.drain()
    assert len(rx.got) == 6 and rx.connections == 2


async def test_wire_bytes_are_canonical_crlf_and_dot_safe(harness: Harness) -> None:
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2")
    body = b"line one\n.leading dot\r\nbare cr\rend\r\n.\r\nafter a lone dot\r\n"
    data = b"Subject: wire\r\nMessage-ID: <wire@example.test>\r\n\r\n" + body
    await harness.queue(["a@dest.test"], data=data)
    await harness.outbound.drain()
    [got] = rx.got
    # One message, nothing cut at the lone dot, and only CRLF line endings.
    assert got.data.count(b"\r\n") == got.data.count(b"\n") == got.data.count(b"\r")
    assert b"\r\n.leading dot\r\n" in got.data
    assert got.data.endswith(b"\r\n.\r\nafter a lone dot\r\n")


async def test_starttls_is_used_when_offered_even_with_a_self_signed_cert(
    harness: Harness, tmp_path: Path
) -> None:
    cert, key = make_self_signed(tmp_path / "rx-tls", "mx1.dest.test")
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2", Script(tls=server_context(cert, key)))
    await harness.queue(["a@dest.test"])
    await harness.outbound.drain()
    [got] = rx.got
    assert got.tls is True


async def test_recipients_of_several_domains_are_settled_once(harness: Harness) -> None:
    one_mx(harness)
    harness.zone.mx("other.test", (10, "mx.other.test"))
    harness.zone.a("mx.other.test", "127.0.0.3")
    rx1 = await harness.receiver("127.0.0.2")
    rx2 = await harness.receiver("127.0.0.3", Script(rcpt_reply=lambda a: "450 4.2.0 later"))
    rid = await harness.queue(["a@dest.test", "b@other.test", "c@missing.test"])
    await harness.outbound.drain()
    assert [g.rcpts for g in rx1.got] == [["a@dest.test"]]
    env = harness.record(rid)
    assert env.rcpts == ("b@other.test",) and env.attempts == 1
    [(_, dsn)] = harness.notices()
    _, [rcpt], _ = dsn_parts(dsn)
    assert rcpt["final-recipient"] == "rfc822; c@missing.test"
    assert rx2.connections == 1


async def test_outbound_connections_use_the_bind_ip(harness: Harness) -> None:
    harness.configure({"delivery": {"bind_ip": "127.0.0.9"}})
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2")
    await harness.queue(["a@dest.test"])
    await harness.outbound.drain()
    assert [g.peer for g in rx.got] == ["127.0.0.9"]


async def test_utf8_addresses_use_smtputf8(harness: Harness) -> None:
    one_mx(harness)
    rx = await harness.receiver("127.0.0.2")
    await harness.queue(["jösé@dest.test"], mail_from="zoë@example.test")
    await harness.outbound.drain()
    [got] = rx.got
    assert got.rcpts == ["jösé@dest.test"] and got.mail_from == "zoë@example.test"
    assert "SMTPUTF8" in got.mail_options
