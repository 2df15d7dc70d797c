"""Live reconfiguration of a running `mailplat serve` process.

Every change reaches the server through a path an admin uses: `mailplat
apply` (control socket), a save under --watch, SIGHUP. A broken change is
refused with file:line:col errors and the old config keeps serving; a
listener moves without disturbing sessions on the others.
"""

from __future__ import annotations

import os
import poplib
import signal
import smtplib
from pathlib import Path

from tests.e2e.serveproc import mailplat, rcpt_code, serve, site_with_ports, status, wait_until
from tests.support import base_postoffice, dump, pw


def add_mailbox(site: Path, name: str) -> None:
    po = base_postoffice()
    po["mailboxes"][name] = {"password": pw(f"{name}-secret")}
    dump(site / "postoffices" / "example.yaml", po)


def test_apply_goes_through_the_control_socket(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path)
    data = tmp_path / "data"
    first = mailplat("apply", str(site), "--data", str(data), "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    with serve(site, data, ports["smtp"]):
        assert rcpt_code(ports["smtp"], "zed@example.test") == 550
        before = status(site, data)
        assert before["generation"] == 1
        add_mailbox(site, "zed")
        res = mailplat("apply", str(site), "--data", str(data), "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "running server" in res.stdout and "Live: generation 2" in res.stdout
        # Incremental: only the one changed postoffice file was parsed again.
        assert "(1 changed file(s) parsed)" in res.stdout, res.stdout
        assert rcpt_code(ports["smtp"], "zed@example.test") == 250
        after = status(site, data)
        assert after["generation"] == 2 and after["digest"] != before["digest"]
        assert after["applied_by"] and after["last_rejected"] is None
        assert any(f":{ports['smtp']}" in line for line in after["listeners"])
        assert (data / "postoffices" / "example" / "zed" / "new").is_dir()
        # The control socket is private to the owner.
        sock = data / "state" / "control.sock"
        assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
        # A broken change is refused by the server with every error, and nothing changes.
        (site / "postoffices" / "example.yaml").write_text(
            "domains:\n  example.test: {}\nmailboxes:\n  zed:\n    pasword: x\n"
        )
        bad = mailplat("apply", str(site), "--data", str(data), "--yes")
        assert bad.returncode == 1
        assert "example.yaml:5:5" in bad.stdout + bad.stderr
        assert rcpt_code(ports["smtp"], "zed@example.test") == 250
        assert status(site, data)["generation"] == 2


def test_watch_applies_saves_and_refuses_broken_ones(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path)
    data = tmp_path / "data"
    with serve(site, data, ports["smtp"], "--watch"):
        # The watcher needs a moment to register its inotify watches after start.
        wait_until(lambda: status(site, data)["uptime_seconds"] > 0.3, what="watcher settled")
        add_mailbox(site, "zed")
        wait_until(lambda: rcpt_code(ports["smtp"], "zed@example.test") == 250, what="watched save")
        gen = status(site, data)["generation"]
        (site / "postoffices" / "example.yaml").write_text("domains: [oops\n")
        wait_until(lambda: status(site, data)["last_rejected"] is not None, what="refusal")
        rejected = status(site, data)["last_rejected"]
        assert rejected["by"] == "watch"
        assert any("example.yaml:" in line for line in rejected["errors"]), rejected
        # The old config keeps serving.
        assert rcpt_code(ports["smtp"], "zed@example.test") == 250
        assert status(site, data)["generation"] == gen


def test_sighup_reloads_from_disk(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path)
    data = tmp_path / "data"
    with serve(site, data, ports["smtp"]) as proc:
        assert rcpt_code(ports["smtp"], "zed@example.test") == 550
        add_mailbox(site, "zed")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: rcpt_code(ports["smtp"], "zed@example.test") == 250, what="SIGHUP")
        assert status(site, data)["last_rejected"] is None
        # A removed mailbox stops receiving at once and keeps its mail.
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as smtp:
            smtp.sendmail("x@remote.test", ["bob@example.test"], b"Subject: keep\r\n\r\nhi\r\n")
        bob = data / "postoffices" / "example" / "bob" / "new"
        wait_until(lambda: bob.is_dir() and any(bob.iterdir()), what="bob's mail")
        po = base_postoffice()
        del po["mailboxes"]["bob"]
        po["groups"]["sales"]["members"] = ["alice@example.test"]
        dump(site / "postoffices" / "example.yaml", po)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: rcpt_code(ports["smtp"], "bob@example.test") == 550, what="removal")
        assert len(list(bob.iterdir())) == 1


def test_moving_a_listener_leaves_other_sessions_alone(tmp_path: Path) -> None:
    from tests.e2e.serveproc import free_port

    site, ports = site_with_ports(tmp_path)
    data = tmp_path / "data"
    with serve(site, data, ports["smtp"]):
        smtp = smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10)
        smtp.ehlo("client.test")
        pop = poplib.POP3("127.0.0.1", ports["pop3"], timeout=10)
        pop.user("alice@example.test")
        pop.pass_("alice-secret")
        new_port = free_port()
        text = (site / "site.yaml").read_text()
        (site / "site.yaml").write_text(
            text.replace(f"127.0.0.1:{ports['pop3']}", f"127.0.0.1:{new_port}")
        )
        res = mailplat("apply", str(site), "--data", str(data), "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"started pop3 127.0.0.1:{new_port}" in res.stdout
        # New POP3 clients use the new port; the old one is closed.
        with_new = poplib.POP3("127.0.0.1", new_port, timeout=10)
        with_new.quit()
        try:
            poplib.POP3("127.0.0.1", ports["pop3"], timeout=5)
            raise AssertionError("old POP3 port still accepts")
        except ConnectionRefusedError:
            pass
        # Sessions opened before the move carry on: the POP3 one on the moved
        # listener and the SMTP one on an untouched listener.
        assert pop.stat()[0] >= 0
        pop.quit()
        smtp.sendmail("x@remote.test", ["alice@example.test"], b"Subject: kept\r\n\r\nhi\r\n")
        smtp.quit()


def test_status_and_apply_without_a_server(tmp_path: Path) -> None:
    site, _ = site_with_ports(tmp_path)
    data = tmp_path / "data"
    res = mailplat("status", str(site), "--data", str(data))
    assert res.returncode == 1
    assert "no server is running" in res.stdout + res.stderr
    # apply works offline as before, and says nothing about a server.
    res = mailplat("apply", str(site), "--data", str(data), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "running server" not in res.stdout
    assert "generation 1 recorded" in res.stdout


def test_install_hooks_refuses_a_non_repository(tmp_path: Path) -> None:
    res = mailplat("git", "install-hooks", str(tmp_path), "--site", "x", "--data", str(tmp_path))
    assert res.returncode == 1
    assert "not a bare git repository" in res.stdout + res.stderr


def test_status_still_answers_when_the_working_tree_is_broken(tmp_path: Path) -> None:
    data = tmp_path / "data"
    site, ports = site_with_ports(tmp_path, site={"server": {"data_root": str(data)}})
    with serve(site, data, ports["smtp"]):
        (site / "postoffices" / "example.yaml").write_text("domains: [oops\n")
        res = mailplat("status", str(site), "--json")  # no --data: found from site.yaml
        assert res.returncode == 0, res.stdout + res.stderr
        queue = mailplat("queue", "list", "--site", str(site))
        assert queue.returncode == 0, queue.stdout + queue.stderr
