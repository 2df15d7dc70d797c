"""`mailplat validate` as an admin meets it: pasteable paths, every error at once, our words.

Each test runs the real command (typer's CliRunner, in-process) against YAML
on disk, the way an admin would, and reads what it prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.clirun import copy_example, run
from tests.support import dump, make_self_signed

ROOT = Path(__file__).resolve().parent.parent.parent
BROKEN = ROOT / "tests" / "fixtures" / "broken"


def _errors(stdout: str) -> list[dict[str, object]]:
    data = json.loads(stdout)
    assert data["ok"] is False
    return [d for d in data["diagnostics"] if d["severity"] == "error"]


def _break_bob(site: Path) -> None:
    po = site / "postoffices" / "example.yaml"
    po.write_text(po.read_text().replace("    quota_mb: 10\n", "    quota_mb: ten\n"))


def test_paths_are_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "sites").mkdir(parents=True)
    site = copy_example(checkout / "sites")
    _break_bob(site)
    monkeypatch.chdir(checkout)
    res = run("validate", "sites/example")
    assert res.exit_code == 1
    # Pasteable from where the command ran: `$EDITOR sites/example/...:25:15` opens the line.
    assert "sites/example/postoffices/example.yaml:25:15: error: invalid value" in res.stderr

    # From inside the site folder the same file is just postoffices/example.yaml.
    monkeypatch.chdir(site)
    res = run("validate", ".")
    assert "\npostoffices/example.yaml:25:15: error:" in "\n" + res.stderr

    # From outside the tree, a relative path would need ../.., so it is absolute.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = run("validate", site)
    assert f"{site.resolve()}/postoffices/example.yaml:25:15: error:" in res.stderr


def test_type_errors_are_said_in_our_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = copy_example(tmp_path)
    po = site / "postoffices" / "example.yaml"
    text = po.read_text().replace("    quota_mb: 10\n", "    quota_mb: ten\n")
    text = text.replace("    type: admin\n", "    type: boss\n")
    text = text.replace("      keep_copy: true\n", "      keep_copy: maybe\n")
    text = text.replace(
        "    members: [alice@example.test, bob@example.test]\n", "    members: 5\n", 1
    )
    po.write_text(text)
    site_yaml = site / "site.yaml"
    site_yaml.write_text(
        site_yaml.read_text().replace(
            "  max_recipients: 50\n", "  max_recipients: 0\n  idle_timeout_seconds: abc\n"
        )
    )
    monkeypatch.chdir(tmp_path)
    res = run("validate", "example")
    assert res.exit_code == 1
    for text in (
        "invalid value: expected a whole number or 'unlimited', got 'ten'",
        "invalid value: expected 'user' or 'admin', got 'boss'",
        "invalid value: expected true or false, got 'maybe'",
        "invalid value: expected a list (lines starting with '- '), got 5",
        "invalid value: must be at least 1, got 0",
        "invalid value: expected a whole number, got 'abc'",
    ):
        assert text in res.stderr, res.stderr
    assert "Input should be" not in res.stderr and "Traceback" not in res.output


def test_cross_object_errors_come_with_field_errors_of_other_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(BROKEN)
    res = run("validate", "field_and_cross_errors", "--json")
    assert res.exit_code == 1
    got = {(e["file"], e["line"], e["col"]) for e in _errors(res.stdout)}
    assert got == {
        ("field_and_cross_errors/postoffices/po.yaml", 7, 15),  # field error
        ("field_and_cross_errors/postoffices/po3.yaml", 2, 10),  # a file that did not parse
        ("field_and_cross_errors/postoffices/po.yaml", 10, 14),  # cross-object, same file
        ("field_and_cross_errors/postoffices/po2.yaml", 4, 15),  # cross-object, another file
    }


def test_header_values_with_line_breaks_are_refused_with_their_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(BROKEN)
    res = run("validate", "header_injection", "--json")
    assert res.exit_code == 1
    got = {(e["file"].split("/", 1)[1], e["line"], e["col"]) for e in _errors(res.stdout)}  # type: ignore[union-attr]
    assert got == {
        ("site.yaml", 4, 14),  # server.host_name
        ("site.yaml", 6, 11),  # smtp.banner
        ("site.yaml", 8, 20),  # delivery.catchall_header (a field name)
        ("postoffices/po.yaml", 5, 12),  # welcome.subject
        ("postoffices/po.yaml", 11, 16),  # autoresponder.subject (a `>` block scalar)
        ("postoffices/po.yaml", 16, 19),  # group display_name with a NUL
        ("postoffices/po.yaml", 22, 21),  # list subject_prefix
    }
    text = run("validate", "header_injection").stderr
    assert "contains a line feed (LF) at character 8" in text
    assert "hint: write it on one line" in text


def test_header_value_refused_in_the_example_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = copy_example(tmp_path)
    po = site / "postoffices" / "example.yaml"
    po.write_text(
        po.read_text().replace(
            "      subject: Out of office\n", '      subject: "Out\\r\\nBcc: all@elsewhere.test"\n'
        )
    )
    monkeypatch.chdir(tmp_path)
    res = run("validate", "example")
    assert res.exit_code == 1
    assert "example/postoffices/example.yaml:27:16: error: invalid value: contains a carriage" in (
        res.stderr
    )


def test_autoresponder_on_postmaster_mail_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    res = run("validate", "postmaster_autoresponder", "--json")
    assert res.exit_code == 1
    got = sorted(str(e["summary"]).split(" receives")[0] for e in _errors(res.stdout))
    assert got == ["mailbox po/PostMaster", "mailbox po/alice", "mailbox po/carol"]


def test_lookalike_domains_and_reserved_names_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)
    res = run("validate", "lookalikes", "--json")
    assert res.exit_code == 0, res.output
    warnings = json.loads(res.stdout)["diagnostics"]
    by_code: dict[str, list[str]] = {}
    for w in warnings:
        by_code.setdefault(w["code"], []).append(w["summary"])
    assert len(by_code["mixed-script"]) == 2
    assert "mixes Cyrillic and Latin letters in 'p\u0430ypal'" in by_code["mixed-script"][0]
    looks = by_code["confusable-domain"]
    assert len(looks) == 2 and all("looks like domain paypal.test" in s for s in looks)
    reserved = sorted(s.split("'")[1] for s in by_code["reserved-name"])
    # console, com10 are fine; CON and nul.txt are reserved whatever the case or extension.
    assert reserved == ["CON", "aux", "com7", "lpt1", "nul.txt"]
    # The Japanese domain mixes Han and Katakana, which is normal writing: no warning.
    assert not any("\u65e5\u672c" in s for s in by_code["mixed-script"])
    # Located at the domain as the admin wrote it (Unicode), not at `domains:`.
    place = {(w["file"], w["line"]) for w in warnings if w["code"] == "mixed-script"}
    assert place == {("lookalikes/postoffices/po.yaml", 5), ("lookalikes/postoffices/po2.yaml", 3)}


def _many_postoffices(root: Path, n: int) -> Path:
    site = root / "many"
    dump(site / "site.yaml", {"server": {"local_domain": "many.test"}})
    for i in range(n):
        dump(site / "postoffices" / f"po{i}.yaml", {"domains": {f"d{i}.test": {}}})
    return site


def test_a_repeated_warning_is_one_line_with_a_count(tmp_path: Path) -> None:
    site = _many_postoffices(tmp_path, 40)
    res = run("validate", site)
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stderr.splitlines() if "has no postmaster mailbox" in line]
    assert len(lines) == 1
    assert "... and 39 more like it (40 x no-postmaster; --verbose lists them all)" in res.stderr

    verbose = run("validate", site, "--verbose")
    lines = [line for line in verbose.stderr.splitlines() if "has no postmaster mailbox" in line]
    assert len(lines) == 40 and "more like it" not in verbose.stderr
    # Scripts get every one.
    data = json.loads(run("validate", site, "--json").stdout)
    assert len(data["diagnostics"]) == 40
    # plan groups the same way.
    plan = run("plan", site, "--data", tmp_path / "data")
    assert "39 more like it" in plan.stderr


def test_missing_tls_files_are_a_warning_at_their_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = copy_example(tmp_path)  # without its tls/ folder
    monkeypatch.chdir(tmp_path)
    res = run("validate", "example", "--verbose")
    assert res.exit_code == 0, res.output  # a site checked away from the host is valid
    lines = [line for line in res.stderr.splitlines() if "not found on this host" in line]
    assert lines and all(line.startswith("example/site.yaml:") for line in lines), res.stderr
    assert any("TLS cert file" in line for line in lines)
    assert "mailplat tls self-signed" in res.stderr
    data = json.loads(run("validate", "example", "--json").stdout)
    codes = [d.get("code") for d in data["diagnostics"]]
    assert "tls-file-missing" in codes
    # With the files in place, no such warning.
    make_self_signed(site / "tls", "mail.example.test")
    again = run("validate", "example")
    assert again.exit_code == 0 and "not found on this host" not in again.stderr
