"""RFC 3834 §2 over SMTP: whom a mailbox's autoresponder must never answer.

Every message goes over a real SMTP session to bob, whose mailbox has an
autoresponder; replies to remote senders wait in the outbound queue (the
test DNS is a sandbox), where we read whom they are addressed to.
"""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import pytest

from mailplat.runtime.server import Server
from tests.support import base_postoffice, maildir_files, running, wait_for, write_site

# sender, extra headers: none of these may be answered.
SILENT = [
    ("MAILER-DAEMON@remote.test", ""),
    ("postmaster@remote.test", ""),
    ("news-request@remote.test", ""),
    ("owner-news@remote.test", ""),
    ("news-owner@remote.test", ""),
    ("noreply@remote.test", ""),
    ("no-reply@remote.test", ""),
    ("do-not-reply@remote.test", ""),
    ("donotreply+1234@remote.test", ""),
    ("no_reply.alerts@remote.test", ""),
    ("bounces+abc=x@remote.test", ""),
    ("h1@remote.test", "Auto-Submitted: auto-generated\r\n"),
    ("h2@remote.test", "Auto-Submitted: Auto-Replied (vacation)\r\n"),
    ("h3@remote.test", "Precedence: bulk\r\n"),
    ("h4@remote.test", "Precedence: list\r\n"),
    ("h5@remote.test", "Precedence: JUNK\r\n"),
    ("h6@remote.test", "List-Id: <news.remote.test>\r\n"),
    ("h7@remote.test", "List-Unsubscribe: <mailto:u@remote.test>\r\n"),
    ("h8@remote.test", "From: No Reply <noreply@remote.test>\r\n"),
    ("h9@remote.test", "X-Auto-Response-Suppress: OOF, AutoReply\r\n"),
]
# These are people: each gets exactly one reply.
ANSWERED = [
    ("carol@remote.test", ""),
    ("replyall@remote.test", ""),
    ("request.owner.fan@remote.test", ""),
    ("dan@remote.test", "Auto-Submitted: no\r\n"),
    ("erin@remote.test", "Precedence: first-class\r\n"),
]


def _send(port: int, cases: list[tuple[str, str]]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        for sender, extra in cases:
            head = extra if extra.startswith("From:") else f"From: <{sender}>\r\n{extra}"
            s.sendmail(sender, ["bob@example.test"], f"{head}Subject: hi\r\n\r\nhello\r\n")


def _replied_to(server: Server) -> list[str]:
    out = []
    for rid in server.spool.records("smtp"):
        env, _ = server.spool.read_record("smtp", rid)
        if not env.mail_from:
            out.extend(env.rcpts)
    return sorted(out)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    po = base_postoffice()
    po["mailboxes"]["bob"]["autoresponder"] = {"subject": "Away", "body": "Back Monday."}
    return write_site(tmp_path, postoffices={"example": po})


async def test_autoresponder_answers_people_only(tmp_path: Path, site: Path) -> None:
    data = tmp_path / "data"
    async with running(site, data) as server:
        await asyncio.to_thread(_send, server.port("smtp"), SILENT + ANSWERED)
        total = len(SILENT) + len(ANSWERED)
        await wait_for(lambda: len(maildir_files(data, "example", "bob")) == total)
        await wait_for(lambda: len(_replied_to(server)) >= len(ANSWERED))
        await server.delivery.drain()
        await server.agent.drain()
        assert _replied_to(server) == sorted(s for s, _ in ANSWERED)
