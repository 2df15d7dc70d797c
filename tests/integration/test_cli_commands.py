"""validate, route, passwd, schema and users through the CLI (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

from mailplat.auth.passwords import verify_password
from mailplat.config.load import load_site
from tests.fixtures.clirun import EXAMPLE, copy_example, run

BROKEN = Path(__file__).parent.parent / "fixtures" / "broken"


def test_validate_ok_and_json() -> None:
    result = run("validate", EXAMPLE)
    assert result.exit_code == 0, result.output
    assert "site example is valid: 2 postoffices, 3 domains" in result.stdout
    assert "expect.yaml: 6 route and 4 relay cases pass" in result.stdout
    data = json.loads(run("validate", EXAMPLE, "--json").stdout)
    assert data["ok"] is True and data["counts"]["mailboxes"] == 5


def test_validate_reports_all_errors_with_locations(monkeypatch) -> None:
    monkeypatch.chdir(BROKEN)
    result = run("validate", "many_errors")
    assert result.exit_code == 1
    for where in (
        "many_errors/site.yaml:6:19",
        "many_errors/postoffices/po.yaml:7:15",
        "many_errors/postoffices/po.yaml:8:5",
        "many_errors/postoffices/po2.yaml:4:5",
        # a cross-object error, reported although site.yaml has a field error
        "many_errors/site.yaml:4:23",
    ):
        assert f"{where}: error:" in result.stderr
    assert "5 error(s)" in result.stderr
    data = json.loads(run("check", "many_errors", "--json").stdout)
    assert data["ok"] is False
    assert [(d["line"], d["col"]) for d in data["diagnostics"]] == [
        (6, 19),
        (7, 15),
        (8, 5),
        (4, 5),
        (4, 23),
    ]


def test_validate_runs_expectations(monkeypatch) -> None:
    monkeypatch.chdir(BROKEN)
    result = run("validate", "expect_failure")
    assert result.exit_code == 1
    assert "expect_failure/expect.yaml:5:5: error: route case 2 fails" in result.stderr


def test_route_explains_steps_and_exit_codes() -> None:
    ok = run("route", "carol@example.org", "--site", EXAMPLE)
    assert ok.exit_code == 0, ok.output
    assert "redirects to dave@shop.test (keeping a copy)" in ok.stdout
    assert "mailbox:example/carol" in ok.stdout and "mailbox:shop/dave" in ok.stdout
    assert "Result: accepted" in ok.stdout

    denied = run("route", "friend@elsewhere.test", "--site", EXAMPLE, "--ip", "203.0.113.9")
    assert denied.exit_code == 3
    assert "denied" in denied.stdout

    allowed = run(
        "route", "friend@elsewhere.test", "--site", EXAMPLE, "--auth", "alice",
        "--from", "alice.smith@example.test", "--json",
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    data = json.loads(allowed.stdout)
    assert data["relay"]["allowed"] is True and data["relay"]["client"]["login"] == "example/alice"
    assert data["destinations"][0]["label"] == "remote:friend@elsewhere.test"

    forged = run(
        "route", "friend@elsewhere.test", "--site", EXAMPLE, "--auth", "alice",
        "--from", "bob@example.test",
    )  # fmt: skip
    assert forged.exit_code == 3
    assert "sender refused" in forged.stdout

    unknown = run("route", "nobody@shop.test", "--site", EXAMPLE)
    assert unknown.exit_code == 3 and "reject" in unknown.stdout
    assert run("route", "not an address", "--site", EXAMPLE).exit_code == 1
    assert run("route", "a@example.test", "--site", EXAMPLE, "--auth", "ghost").exit_code == 1


def test_passwd_reads_stdin_and_random() -> None:
    result = run("passwd", input="s3cret-pass\n")
    assert result.exit_code == 0, result.output
    hashed = result.stdout.strip()
    assert hashed.startswith("$argon2id$") and verify_password(hashed, "s3cret-pass")
    rnd = run("passwd", "--random", "--json")
    data = json.loads(rnd.stdout)
    assert verify_password(data["hash"], data["password"])
    assert run("passwd", input="\n").exit_code == 1


def test_schema_check_and_write(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(
        "# x\n<!-- config-reference:start -->\n<!-- config-reference:end -->\n"
    )
    assert run("schema", "--check", "--root", tmp_path).exit_code == 1
    wrote = run("schema", "--root", tmp_path)
    assert wrote.exit_code == 0, wrote.output
    assert (tmp_path / "schemas" / "postoffice.schema.json").exists()
    assert "| `quota_mb` |" in (tmp_path / "README.md").read_text()
    assert run("schema", "--check", "--root", tmp_path).exit_code == 0


def test_users_import_keeps_comments_and_updates(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    po = site / "postoffices" / "example.yaml"
    before = po.read_text()
    csv = tmp_path / "users.csv"
    csv.write_text(
        "emailaddress,password,quota\n"
        "frank@example.test,frank-secret,50\n"
        "alice.smith@example.test,,200\n"
        "zed@newdomain.test\n"
        "bob@example.test,$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234,\n"
    )
    result = run("users", "import", csv, "--site", site, "--postoffice", "example")
    assert result.exit_code == 0, result.output
    after = po.read_text()
    # Every comment and the schema line survive, in place.
    for line in before.splitlines():
        if line.lstrip().startswith("#"):
            assert line in after
    assert after.splitlines()[0] == before.splitlines()[0]
    assert after.count("  alice:\n") == 1 and after.count("  bob:\n") == 1
    config = load_site(site)
    example = config.postoffices["example"]
    assert example.mailboxes["alice"].quota_mb == 200
    assert verify_password(example.mailboxes["frank"].password, "frank-secret")
    assert example.mailboxes["frank"].quota_mb == 50
    assert example.mailboxes["bob"].password is not None
    assert example.mailboxes["bob"].password.startswith("$2b$12$")
    assert "newdomain.test" in example.domains
    # Importing again changes nothing but updates.
    again = run("users", "import", csv, "--site", site, "--postoffice", "example")
    assert again.exit_code == 0 and "0 added, 4 updated" in again.stdout


def test_users_import_refuses_a_domain_of_another_postoffice(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    before = (site / "postoffices" / "example.yaml").read_text()
    csv = tmp_path / "u.csv"
    csv.write_text("eve@shop.test,pw,\n")
    result = run("users", "import", csv, "--site", site, "--postoffice", "example")
    assert result.exit_code == 1
    assert "belongs to postoffice shop" in result.stderr
    assert (site / "postoffices" / "example.yaml").read_text() == before


def test_users_import_rolls_back_an_invalid_result(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    before = (site / "postoffices" / "example.yaml").read_text()
    csv = tmp_path / "u.csv"
    csv.write_text("sales@example.test,pw,\n")  # the group owns sales@
    result = run("users", "import", csv, "--site", site, "--postoffice", "example")
    assert result.exit_code == 1
    assert "already belongs to" in result.stderr
    assert (site / "postoffices" / "example.yaml").read_text() == before


def test_users_export_fields() -> None:
    result = run("users", "export", "--site", EXAMPLE, "--fields", "email,quota,postoffice")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "bob@example.test,10,example" in lines
    assert "dave@shop.test,unlimited,shop" in lines
    assert run("users", "export", "--site", EXAMPLE, "--fields", "nope").exit_code == 1
