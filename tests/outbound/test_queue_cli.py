"""`mailplat queue ...` and `mailplat badmail ...` against a running server.

The server relays to dest.test, whose MX is an aiosmtpd receiver we can make
defer or accept. The CLI runs as a real subprocess and talks to the server's
control socket, as an admin would.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import subprocess
import sys
from pathlib import Path
from typing import Any

from mailplat.runtime.server import Server
from tests.outbound.test_server_e2e import relay_site
from tests.support import base_postoffice, maildir_files, running, wait_for, write_site
from tests.support_dns import DnsServer
from tests.support_smtp import Receiver, Script, free_port

DEFER = "451 4.3.0 Try again later"


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailplat", *args, "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def acli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, data, *args)


async def listed(data: Path, group: str = "queue") -> list[dict[str, Any]]:
    res = await acli(data, group, "list", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    entries = json.loads(res.stdout)
    assert isinstance(entries, list)
    return entries


def send(server: Server, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        s.sendmail(
            "alice@example.test",
            ["bob@dest.test"],
            f"From: alice@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n",
        )


async def test_queue_commands_end_to_end(tmp_path: Path, dns: DnsServer) -> None:
    port = free_port()
    site = relay_site(tmp_path, dns, port)
    data = tmp_path / "data"
    rx = await Receiver("127.0.0.2", port, Script(mail_reply=DEFER)).start()
    try:
        async with running(site, data) as server:
            # A deferred message shows with its last error.
            await asyncio.to_thread(send, server, "first")
            await wait_for(lambda: server.spool.stats().get("smtp", 0) == 1)

            async def deferred() -> dict[str, Any]:
                for _ in range(200):
                    entries = await listed(data)
                    if entries and entries[0]["attempts"] >= 1:
                        return entries[0]
                    await asyncio.sleep(0.05)
                raise AssertionError("never deferred")

            entry = await deferred()
            assert entry["recipients"] == ["bob@dest.test"]
            assert "451" in entry["last_error"]
            table = await acli(data, "queue", "list")
            assert entry["id"] in table.stdout and "1 message(s)" in table.stdout
            # The id SMTP answered with ("queued as X") works as well as the record id.
            shown = await acli(data, "queue", "show", entry["id"].rsplit(".", 1)[0])
            assert shown.returncode == 0 and "Subject: first" in shown.stdout
            # Retry now, with the remote accepting again.
            rx.script = Script()
            res = await acli(data, "queue", "retry", entry["id"])
            assert res.returncode == 0, res.stderr
            [got] = await rx.wait(1)
            assert b"Subject: first" in got.data
            await wait_for(lambda: server.spool.stats().get("smtp", 0) == 0)

            # Delete moves to badmail; resend delivers it after all.
            rx.script = Script(mail_reply=DEFER)
            await asyncio.to_thread(send, server, "second")
            second = await deferred()
            res = await acli(data, "queue", "delete", second["id"])
            assert res.returncode == 0 and "badmail" in res.stdout
            [parked] = await listed(data, "badmail")
            assert parked["reason"] == "deleted by the administrator"
            rx.script = Script()
            res = await acli(data, "badmail", "resend", parked["id"])
            assert res.returncode == 0, res.stderr
            await rx.wait(2)
            assert await listed(data, "badmail") == []

            # Bounce returns it to the sender with a DSN.
            rx.script = Script(mail_reply=DEFER)
            await asyncio.to_thread(send, server, "third")
            third = await deferred()
            res = await acli(data, "queue", "bounce", third["id"])
            assert res.returncode == 0 and "returned to its sender" in res.stdout
            await wait_for(
                lambda: any(
                    b"multipart/report" in f.read_bytes()
                    for f in maildir_files(data, "example", "alice")
                )
            )
            assert await listed(data) == []

            # Errors: no such message (exit 3), nothing to retry (exit 1).
            missing = await acli(data, "queue", "show", "NOPE.0")
            assert missing.returncode == 3 and "no message" in missing.stderr
            nothing = await acli(data, "queue", "retry")
            assert nothing.returncode == 1
    finally:
        await rx.stop()


def test_queue_list_without_a_server(tmp_path: Path) -> None:
    res = cli(tmp_path, "queue", "list")
    assert res.returncode == 1
    assert "no server is running" in res.stdout + res.stderr


def _views_site(tmp_path: Path, dns: DnsServer, port: int) -> Path:
    dns.zone.mx("dest.test", (10, "mx1.dest.test"))
    dns.zone.a("mx1.dest.test", "127.0.0.2")
    po = base_postoffice()
    po["lists"] = {"news": {"domain": "example.test", "owner": "postmaster"}}
    return write_site(
        tmp_path,
        site={
            "server": {"dns_servers": [dns.address]},
            "relay": {"privileged_ips": ["127.0.0.1"]},
            "delivery": {"remote_port": port, "remote_timeout_seconds": 5},
        },
        postoffices={"example": po},
        tls=False,
    )


async def test_queue_views_history_pipes_and_the_list_queue(tmp_path: Path, dns: DnsServer) -> None:
    port = free_port()
    site = _views_site(tmp_path, dns, port)
    data = tmp_path / "data"
    long_rcpt = "someone.with.a.rather.long.address.for.columns@dest.test"
    rx = await Receiver("127.0.0.2", port, Script(mail_reply=DEFER)).start()
    try:
        async with running(site, data) as server:

            def send_two() -> None:
                with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
                    s.sendmail("alice@example.test", [long_rcpt], b"Subject: v\r\n\r\nbody\r\n")
                    s.sendmail(
                        "alice@example.test", ["news@example.test"], b"Subject: l\r\n\r\nb\r\n"
                    )

            await asyncio.to_thread(send_two)
            await wait_for(
                lambda: (
                    server.spool.stats().get("list", 0) == 1
                    and any(
                        server.spool.read_record("smtp", r)[0].attempts >= 1
                        for r in server.spool.records("smtp")
                    )
                )
            )
            [entry] = await listed(data)
            # In a pipe (subprocess output is one): one full-width line per message.
            table = await acli(data, "queue", "list")
            [row] = [line for line in table.stdout.splitlines() if entry["id"] in line]
            assert long_rcpt in row and DEFER in row and "alice@example.test" in row
            assert "│" not in table.stdout  # plain columns for grep and awk

            # The list queue is visible, alone or with every queue.
            only_list = (await acli(data, "queue", "list", "--queue", "list", "--json")).stdout
            [held] = json.loads(only_list)
            assert held["queue"] == "list" and held["recipients"] == ["news@example.test"]
            everything = await acli(data, "queue", "list", "--queue", "all")
            queue_of = {
                line.split()[0]: line.split()[1]
                for line in everything.stdout.splitlines()
                if line.split() and line.split()[0] in (entry["id"], held["id"])
            }
            assert queue_of == {entry["id"]: "smtp", held["id"]: "list"}
            shown = await acli(data, "queue", "show", held["id"].rsplit(".", 1)[0], "--json")
            assert json.loads(shown.stdout)["entry"]["queue"] == "list"
            bad = await acli(data, "queue", "list", "--queue", "nope")
            assert bad.returncode == 1 and "choose smtp" in bad.stderr

        # History persists in the record: a restart still shows the attempt.
        async with running(site, data) as server:
            res = await acli(data, "queue", "show", entry["id"], "--json")
            assert res.returncode == 0, res.stderr
            [attempt] = json.loads(res.stdout)["history"]
            [result] = attempt["results"]
            assert result["result"] == "deferred" and result["rcpts"] == [long_rcpt]
            assert DEFER in result["reply"] and result["host"] == "mx1.dest.test"
            assert abs(attempt["at"] - entry["received_at"]) < 60
            text = await acli(data, "queue", "show", entry["id"])
            assert "history" in text.stdout and DEFER in text.stdout
            # A second attempt adds a second line of history.
            await acli(data, "queue", "retry", entry["id"])
            await wait_for(lambda: server.spool.read_record("smtp", entry["id"])[0].attempts >= 2)
            res = await acli(data, "queue", "show", entry["id"], "--json")
            assert [a["n"] for a in json.loads(res.stdout)["history"]] == [1, 2]
    finally:
        await rx.stop()
