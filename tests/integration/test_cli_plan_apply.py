"""plan/apply round trips through the real CLI, on a copy of sites/example.

apply then plan says "No changes" (exit 0); an edit makes plan exit 2 and list
it; a removed mailbox keeps its mail and the plan says where; the welcome
message is delivered once; validation and expect.yaml failures refuse both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mailplat.reconcile.state import read_generation
from mailplat.store.maildir import Maildir
from tests.fixtures.clirun import copy_example, run, run_process


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_apply_then_plan_has_no_changes_real_process(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    data = tmp_path / "data"
    first = run_process("plan", site, "--data", data)
    assert first.returncode == 2, first.stderr
    # 21: the site sections include `pop3` (issue 9) and `authentication` (issue 11).
    assert "Plan: 21 to add, 0 to change, 0 to remove." in first.stdout
    applied = run_process("apply", site, "--data", data, "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "generation 1" in applied.stdout
    again = run_process("plan", site, "--data", data)
    assert again.returncode == 0, again.stderr
    assert "No changes." in again.stdout


def test_change_is_listed_and_exits_2(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    data = tmp_path / "data"
    assert run("apply", site, "--data", data, "--yes").exit_code == 0
    _edit(site / "postoffices" / "example.yaml", "    quota_mb: 10\n", "    quota_mb: 25\n")
    _edit(site / "postoffices" / "shop.yaml", "mailboxes:\n", "mailboxes:\n  erin: {}\n")
    result = run("plan", site, "--data", data)
    assert result.exit_code == 2, result.output
    out = result.stdout
    assert "~ mailbox example/bob" in out
    assert "quota_mb: 10 → 25" in out
    assert "+ mailbox shop/erin" in out
    assert f"+ Maildir {data / 'postoffices' / 'shop' / 'erin'}" in out
    assert "erin@shop.test: reject → mailbox:shop/erin" in out
    assert "Plan: 1 to add, 1 to change, 0 to remove." in out

    as_json = json.loads(run("plan", site, "--data", data, "--json").stdout)
    assert as_json["summary"] == {"add": 1, "change": 1, "remove": 0}
    assert {c["name"] for c in as_json["changes"]} == {"example/bob", "shop/erin"}
    assert as_json["routing"] == [
        {"address": "erin@shop.test", "before": ["reject"], "after": ["mailbox:shop/erin"]}
    ]

    assert run("apply", site, "--data", data, "--yes").exit_code == 0
    assert run("plan", site, "--data", data).exit_code == 0
    generation = read_generation(data)
    assert generation is not None and generation.number == 2


def test_removed_mailbox_keeps_its_mail_and_says_where(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    data = tmp_path / "data"
    assert run("apply", site, "--data", data, "--yes").exit_code == 0
    bob = data / "postoffices" / "example" / "bob"
    Maildir(bob).deliver(b"Subject: keep me\r\n\r\nhello\r\n")
    po = site / "postoffices" / "example.yaml"
    text = po.read_text()
    start, end = text.index("  bob:\n"), text.index("  carol:\n")
    po.write_text(
        (text[:start] + text[end:]).replace(
            "[alice@example.test, bob@example.test]", "[alice@example.test]"
        )
    )
    # expect.yaml pins sales@ to bob too: the reviewer updates the case with the change.
    _edit(
        site / "expect.yaml",
        '["mailbox:example/alice", "mailbox:example/bob"]',
        '["mailbox:example/alice"]',
    )
    plan = run("plan", site, "--data", data)
    assert plan.exit_code == 2, plan.output
    assert "- mailbox example/bob" in plan.stdout
    assert f"2 message(s) kept in {bob} (nothing is deleted)" in plan.stdout
    applied = run("apply", site, "--data", data, "--yes")
    assert applied.exit_code == 0, applied.output
    assert f"Kept 2 message(s) of removed mailbox example/bob in {bob}" in applied.stdout
    assert len(Maildir(bob).messages()) == 2
    assert run("plan", site, "--data", data).exit_code == 0


def test_welcome_message_is_delivered_once(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    data = tmp_path / "data"
    assert run("apply", site, "--data", data, "--yes").exit_code == 0
    alice = Maildir(data / "postoffices" / "example" / "alice")
    [msg] = alice.messages()
    body = alice.read(msg.uid)
    for header in (b"From: postmaster@example.test", b"To: alice@example.test", b"Message-ID: <"):
        assert header in body
    assert b"Subject: Welcome to example.test" in body and b"Date: " in body
    # shop has no welcome: dave's Maildir starts empty.
    assert Maildir(data / "postoffices" / "shop" / "dave").messages() == []
    # A second apply (forced by a change) and a deleted Maildir folder of another
    # mailbox: alice still has one welcome; the recreated bob gets a new one.
    _edit(site / "site.yaml", "max_recipients: 50", "max_recipients: 60")
    assert run("apply", site, "--data", data, "--yes").exit_code == 0
    assert len(alice.messages()) == 1


def test_missing_maildir_is_recreated_level_based(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    data = tmp_path / "data"
    assert run("apply", site, "--data", data, "--yes").exit_code == 0
    shutil.rmtree(data / "postoffices" / "shop" / "dave")
    plan = run("plan", site, "--data", data)
    assert plan.exit_code == 2
    assert "missing Maildir(s) to create" in plan.stdout
    assert run("apply", site, "--data", data, "--yes").exit_code == 0
    assert run("plan", site, "--data", data).exit_code == 0


def test_apply_without_yes_and_without_terminal_refuses(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    data = tmp_path / "data"
    result = run("apply", site, "--data", data)
    assert result.exit_code == 1
    assert "--yes" in result.stderr
    assert read_generation(data) is None
    assert not (data / "postoffices").exists()


def test_invalid_config_refuses_plan_and_apply_with_every_error(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    data = tmp_path / "data"
    _edit(site / "postoffices" / "shop.yaml", "    password:", "    pasword:")
    _edit(site / "site.yaml", "max_recipients: 50", "max_recipients: many")
    lines = (site / "site.yaml").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "max_recipients: many" in text)
    for args in (("plan",), ("apply", "--yes")):
        result = run(*args, site, "--data", data)
        assert result.exit_code == 1
        assert "example/postoffices/shop.yaml:10:5: error: unknown key 'pasword'" in result.stderr
        assert "did you mean 'password'?" in result.stderr
        assert f"example/site.yaml:{line}:19: error: invalid value" in result.stderr
    assert not data.exists()


def test_broken_expectation_refuses_plan_and_apply(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    data = tmp_path / "data"
    _edit(site / "postoffices" / "example.yaml", "      keep_copy: true\n", "")
    result = run("apply", site, "--data", data, "--yes")
    assert result.exit_code == 1
    assert "example/expect.yaml:8:5: error: route case 3 fails: carol@example.org" in result.stderr
    assert run("plan", site, "--data", data).exit_code == 1
    assert read_generation(data) is None


def test_data_root_from_site_setting(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    _edit(
        site / "site.yaml",
        "  default_postoffice: example\n",
        "  default_postoffice: example\n  data_root: ../fromsite\n",
    )
    assert run("apply", site, "--yes").exit_code == 0
    assert (tmp_path / "fromsite" / "state" / "generation.json").exists()
    result = run_process("plan", site, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["changes_pending"] is False
