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
from tests.support import maildir_files, running, wait_for
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
