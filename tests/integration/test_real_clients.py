"""Real third-party clients against a real server: swaks sends, fetchmail reads.

tests/setup-tools.sh (run by `make test`) installs swaks and fetchmail; when
they are missing these tests fail rather than skip, so a green run means the
clients really ran.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from mailplat.runtime.server import Server
from tests.support import maildir_files, wait_for


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `make tools` (tests/setup-tools.sh)"
    return path


async def test_swaks_sends_plain_and_with_starttls_auth(server: Server, data_root: Path) -> None:
    swaks = _tool("swaks")
    port = server.port("smtp")
    plain = await asyncio.to_thread(
        subprocess.run,
        [
            swaks,
            "--server",
            f"127.0.0.1:{port}",
            "--from",
            "someone@remote.test",
            "--to",
            "alice@example.test",
            "--header",
            "Subject: via swaks",
            "--body",
            "swaks body",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 0, plain.stdout + plain.stderr
    sub = server.port("submission")
    authed = await asyncio.to_thread(
        subprocess.run,
        [
            swaks,
            "--server",
            f"127.0.0.1:{sub}",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob@example.test",
            "--auth-password",
            "bob-secret",
            "--from",
            "bob@example.test",
            "--to",
            "alice@example.test",
            "--header",
            "Subject: swaks over submission",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert authed.returncode == 0, authed.stdout + authed.stderr
    assert "250 2.0.0 OK queued as" in authed.stdout
    await wait_for(lambda: len(maildir_files(data_root, "example", "alice")) == 2)
    texts = b"".join(f.read_bytes() for f in maildir_files(data_root, "example", "alice"))
    assert b"Subject: via swaks" in texts and b"with ESMTPSA" in texts


async def test_swaks_null_sender_bounce_is_accepted(server: Server, data_root: Path) -> None:
    """RFC 5321 §4.5.5: `MAIL FROM:<>` (every DSN on the Internet) is a sender like any other."""
    swaks = _tool("swaks")
    result = await asyncio.to_thread(
        subprocess.run,
        [
            swaks,
            "--server",
            f"127.0.0.1:{server.port('smtp')}",
            "--from",
            "<>",
            "--to",
            "alice@example.test",
            "--header",
            "Subject: Undelivered Mail Returned to Sender",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MAIL FROM:<>" in result.stdout and "250 2.0.0 OK queued as" in result.stdout
    await wait_for(lambda: len(maildir_files(data_root, "example", "alice")) == 1)
    assert (
        maildir_files(data_root, "example", "alice")[0]
        .read_bytes()
        .startswith(b"Return-Path: <>\n")
    )


async def test_swaks_relay_attempt_is_refused(server: Server) -> None:
    swaks = _tool("swaks")
    result = await asyncio.to_thread(
        subprocess.run,
        [
            swaks,
            "--server",
            f"127.0.0.1:{server.port('smtp')}",
            "--from",
            "x@remote.test",
            "--to",
            "victim@elsewhere.test",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "550 5.7.1" in result.stdout


async def test_fetchmail_retrieves_over_pop3(
    server: Server, data_root: Path, tmp_path: Path
) -> None:
    fetchmail = _tool("fetchmail")

    def send() -> None:
        import smtplib

        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
            for i in range(3):
                s.sendmail(
                    "x@remote.test",
                    ["bob@example.test"],
                    f"Subject: fm {i}\r\nMessage-ID: <fm{i}@remote.test>\r\n\r\n.dot line {i}\r\nend\r\n".encode(),
                )

    await asyncio.to_thread(send)
    await wait_for(lambda: len(maildir_files(data_root, "example", "bob")) == 3)
    out_dir = tmp_path / "fetched"
    out_dir.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 protocol POP3 port {server.port('pop3')} auth password\n"
        f'  user "bob@example.test" there with password "bob-secret" is root here\n'
        "  sslproto ''\n"
        f"  mda \"/bin/sh -c 'cat > {out_dir}/$$RANDOM.$$$$'\"\n"
    )
    rc.chmod(0o600)
    result = await asyncio.to_thread(
        subprocess.run,
        [
            fetchmail,
            "-f",
            str(rc),
            "--nodetach",
            "--nokeep",
            "-v",
            "--pidfile",
            str(tmp_path / "fm.pid"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    fetched = sorted(p.read_bytes() for p in out_dir.iterdir())
    assert len(fetched) == 3
    assert all(b".dot line" in m for m in fetched)
    # --nokeep: fetchmail deleted them at QUIT.
    await wait_for(lambda: maildir_files(data_root, "example", "bob") == [])
