"""Local delivery beyond the Maildir write: autoresponder (RFC 3834) and delivery events.

Senders are local mailboxes so the replies stay on this server (no outbound).
The autoresponder answers once per sender, never to bulk mail, and remembers
whom it answered across a restart.
"""

from __future__ import annotations

import asyncio
import smtplib
import sys
from email import message_from_bytes
from pathlib import Path

from tests.support import base_postoffice, maildir_files, running, wait_for, write_site


def _site(tmp_path: Path, program: Path | None = None) -> Path:
    po = base_postoffice()
    po["mailboxes"]["bob"]["autoresponder"] = {"subject": "Away", "body": "Back Monday."}
    po["mailboxes"]["bob"]["reply_to"] = "sales@example.test"
    if program is not None:
        po["mailboxes"]["alice"]["delivery_event"] = {"program": str(program)}
    return write_site(tmp_path, postoffices={"example": po})


def _send(port: int, sender: str, rcpt: str, extra: str = "") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.sendmail(
            sender,
            [rcpt],
            f"Message-ID: <m@x.test>\r\n{extra}Subject: hi\r\n\r\nhello\r\n".encode(),
        )


def _replies(data: Path) -> list[bytes]:
    return [
        f.read_bytes()
        for f in maildir_files(data, "example", "alice")
        if b"Auto-Submitted: auto-replied" in f.read_bytes()
    ]


async def test_autoresponder_answers_once_and_remembers_across_a_restart(tmp_path: Path) -> None:
    site = _site(tmp_path)
    data = tmp_path / "data"
    async with running(site, data) as server:
        port = server.port("smtp")
        await asyncio.to_thread(_send, port, "alice@example.test", "bob@example.test")
        await wait_for(lambda: len(_replies(data)) == 1)
        reply = message_from_bytes(_replies(data)[0])
        assert reply["Subject"] == "Away"
        assert reply["From"] == "<sales@example.test>"  # the mailbox's reply-to address
        assert reply["In-Reply-To"] == "<m@x.test>"
        assert reply["Return-Path"] == "<>"  # RFC 3834 §3.3: null sender
        assert "Back Monday." in reply.get_payload()
        # Bulk mail gets no reply, and neither does a second message.
        await asyncio.to_thread(
            _send, port, "alice@example.test", "bob@example.test", "Precedence: bulk\r\n"
        )
        await asyncio.to_thread(_send, port, "alice@example.test", "bob@example.test")
        await wait_for(lambda: len(maildir_files(data, "example", "bob")) == 3)
        await server.delivery.drain()
    assert len(_replies(data)) == 1
    async with running(site, data) as server:
        await asyncio.to_thread(
            _send, server.port("smtp"), "alice@example.test", "bob@example.test"
        )
        await wait_for(lambda: len(maildir_files(data, "example", "bob")) == 4)
        await server.agent.drain()
        await server.delivery.drain()
    assert len(_replies(data)) == 1


async def test_delivery_event_runs_with_the_message_file(tmp_path: Path) -> None:
    out = tmp_path / "event.txt"
    program = tmp_path / "event.py"
    program.write_text(
        f"#!{sys.executable}\nimport sys, pathlib\n"
        f"pathlib.Path({str(out)!r}).write_text(' '.join(sys.argv[1:3]) + ' ' + "
        "str(pathlib.Path(sys.argv[3]).exists()))\n"
    )
    program.chmod(0o755)
    site = _site(tmp_path, program)
    data = tmp_path / "data"
    async with running(site, data) as server:
        await asyncio.to_thread(
            _send, server.port("smtp"), "bob@example.test", "alice@example.test"
        )
        await wait_for(lambda: out.exists() and out.read_text() != "", timeout=20)
    assert out.read_text() == "example alice True"
