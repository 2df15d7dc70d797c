"""Every validation rule and loader error, one broken fixture each, with exact file:line:col.

Fixtures live in tests/fixtures/broken/<case>/ as an admin would write them;
each case lists every error it must produce (location and a message fragment)
and nothing else: a fixture with several problems proves they all come at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailplat.config.directory import Directory
from mailplat.config.load import load_site
from mailplat.core.errors import ConfigError
from mailplat.reconcile.expect import run_expectations

ROOT = Path(__file__).resolve().parent.parent.parent
BROKEN = ROOT / "tests" / "fixtures" / "broken"
PO = "postoffices/po.yaml"
# Diagnostics name files relative to the current directory; the tests run from the checkout.
REL = "tests/fixtures/broken"


@pytest.fixture(autouse=True)
def _from_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


# case -> [(file:line:col relative to the case folder, message fragment, hint fragment)]
CASES: dict[str, list[tuple[str, str, str]]] = {
    "syntax_error": [(f"{PO}:7:6", "YAML syntax error: did not find expected ','", "indentation")],
    "duplicate_key": [(f"{PO}:7:3", "duplicate key 'alice' (first on line 6)", "remove one")],
    "unknown_key": [(f"{PO}:7:5", "unknown key 'quota'", "did you mean 'quota_mb'?")],
    "wrong_type": [
        (f"{PO}:7:15", "invalid value: expected a whole number or 'unlimited', got 'lots'", "")
    ],
    "plain_password": [(f"{PO}:7:15", "plain-text passwords are refused", "")],
    "missing_required": [(f"{PO}:9:5", "missing required key 'address'", "add `address:`")],
    "smarthost_auth_sources": [
        ("site.yaml:9:7", "set exactly one of password_env or password_file", "")
    ],
    "not_mapping": [(f"{PO}:1:1", "the file must hold a mapping", "")],
    "missing_site": [("site.yaml", "site.yaml is missing", "create it")],
    "name_mismatch": [(f"{PO}:2:7", "postoffice name 'other' does not match", "rename the file")],
    "no_domain": [(f"{PO}:2:10", "a postoffice needs at least one domain", "add domains")],
    "domain_twice": [
        ("postoffices/po2.yaml:3:11", "domain t.test already belongs to postoffice po", ""),
        ("postoffices/po2.yaml:5:15", "address postmaster@t.test already belongs to", ""),
    ],
    "address_twice": [
        (f"{PO}:8:8", "address bob@t.test already belongs to mailbox po/alice", "use a group")
    ],
    "list_collides": [
        (f"{PO}:9:5", "address alice@t.test already belongs to mailbox po/alice", "")
    ],
    "foreign_domain": [
        (f"{PO}:7:17", "alice@elsewhere.test uses domain elsewhere.test, which is not", "t.test")
    ],
    "group_foreign_domain": [(f"{PO}:9:14", "group address team@elsewhere.test is not on", "")],
    "list_foreign_domain": [(f"{PO}:9:13", "list domain elsewhere.test is not a domain", "")],
    "list_owner_missing": [(f"{PO}:10:12", "no mailbox 'nobody' in postoffice po", "")],
    "unknown_target": [(f"{PO}:4:15", "no mailbox 'nobody' in postoffice po", "existing mailbox")],
    "catchall_self_loop": [
        (f"{PO}:4:15", "ghost@t.test is on a local domain but no mailbox, group or list", "")
    ],
    "bad_target_address": [(f"{PO}:4:12", "'a@@b' is not a valid address", "")],
    "missing_local_target": [
        (f"{PO}:8:12", "ghost@t.test is on a local domain but no mailbox, group or list", "")
    ],
    "group_loop": [(f"{PO}:10:14", "loop: a@t.test -> b@t.test -> a@t.test", "break the loop")],
    "redirect_loop": [(f"{PO}:7:15", "loop: alice@t.test -> bob@t.test -> alice@t.test", "")],
    "default_postoffice_missing": [
        ("site.yaml:4:23", "default_postoffice 'nope' does not exist", "name one of: po")
    ],
    "tls_missing": [("site.yaml:7:5", "listener smtps needs a tls: certificate", "self-signed")],
    "bind_collision": [("site.yaml:9:12", "127.0.0.1:2525 is already used by listener smtp", "")],
    "many_errors": [
        ("site.yaml:6:19", "invalid value: expected a whole number, got 'zero'", ""),
        # Cross-object errors come in the same run as the field errors.
        ("site.yaml:4:23", "default_postoffice 'nope' does not exist", ""),
        (f"{PO}:7:15", "plain-text passwords are refused", ""),
        (f"{PO}:8:5", "unknown key 'quotta_mb'", "did you mean 'quota_mb'?"),
        ("postoffices/po2.yaml:4:5", "unknown key 'catchal'", "did you mean 'catchall'?"),
    ],
    # A field error in one file hides no cross-object error of the others, and no
    # rule guesses about what did not parse (alice, po3 as default_postoffice).
    "field_and_cross_errors": [
        (f"{PO}:7:15", "expected a whole number or 'unlimited', got 'lots'", ""),
        ("postoffices/po3.yaml:2:10", "expected a mapping (key: value lines), got a list", ""),
        (f"{PO}:10:14", "group address team@elsewhere.test is not on a domain", ""),
        ("postoffices/po2.yaml:4:15", "no mailbox 'nobody' in postoffice po2", ""),
    ],
    # Values that reach a header or an SMTP line: refused, never flattened at runtime.
    "header_injection": [
        ("site.yaml:4:14", "contains a carriage return (CR) at character 10", "one line"),
        ("site.yaml:6:11", "contains a carriage return (CR) at character 20", "one line"),
        ("site.yaml:8:20", "'X-Original To:' is not a header field name", "X-Original-To"),
        (f"{PO}:5:12", "contains a line feed (LF) at character 8", "quoted string"),
        (f"{PO}:11:16", "contains a line feed (LF) at character 5", "|- / >-"),
        (f"{PO}:16:19", "contains the control character U+0000", "invisible"),
        (f"{PO}:22:21", "contains a carriage return (CR) at character 7", "one line"),
    ],
    # The seed forbids an autoresponder on postmaster mail; bob has no postmaster
    # role and dave's autoresponder is off, so neither is reported.
    "postmaster_autoresponder": [
        (f"{PO}:12:20", "mailbox po/PostMaster receives postmaster mail (it is named", "remove"),
        (f"{PO}:14:20", "mailbox po/alice receives postmaster mail (postmaster: of domain u", ""),
        (f"{PO}:18:20", "mailbox po/carol receives postmaster mail (postmaster: of domain v", ""),
    ],
    "many_cross_errors": [
        ("site.yaml:4:23", "default_postoffice 'nope' does not exist", ""),
        (f"{PO}:8:17", "alice@elsewhere.test uses domain elsewhere.test", ""),
        (f"{PO}:4:15", "no mailbox 'nobody' in postoffice po", ""),
        (f"{PO}:12:14", "loop: a@t.test -> b@t.test -> a@t.test", ""),
    ],
}


def test_every_fixture_has_a_case() -> None:
    folders = {p.name for p in BROKEN.iterdir() if p.is_dir()}
    assert folders - {"expect_failure", "warnings_only", "lookalikes"} == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_fixture_reports_every_error_with_its_location(case: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_site(BROKEN / case)
    errors = [d for d in info.value.diagnostics if getattr(d, "is_error", False)]
    got = sorted((str(d.location), d.summary, d.hint) for d in errors)  # type: ignore[attr-defined]
    expected = CASES[case]
    assert len(got) == len(expected), got
    for where, fragment, hint in expected:
        matches = [
            g for g in got if g[0] == f"{REL}/{case}/{where}" and fragment in g[1] and hint in g[2]
        ]
        assert matches, f"no error at {case}/{where} with {fragment!r} / {hint!r}; got {got}"


def test_expect_failures_name_each_case_at_its_line() -> None:
    config = load_site(BROKEN / "expect_failure")
    report = run_expectations(config, Directory(config))
    assert not report.ok
    got = [(str(d.location), d.summary) for d in report.diagnostics]
    assert got[0][0] == f"{REL}/expect_failure/expect.yaml:5:5"
    assert "route case 2 fails: nobody@t.test should land on mailbox:po/alice" in got[0][1]
    assert "lands on reject" in got[0][1]
    assert got[1][0] == f"{REL}/expect_failure/expect.yaml:8:5"
    assert "relay case 1" in got[1][1] and "should be allowed but is denied" in got[1][1]
    assert got[2][0] == f"{REL}/expect_failure/expect.yaml:9:5"
    assert "login 'ghost' matches no mailbox" in got[2][1]
    assert len(got) == 3


def test_warnings_do_not_fail_validation() -> None:
    config = load_site(BROKEN / "warnings_only")
    got = sorted((str(d.location), d.summary) for d in config.warnings)
    assert [g[0] for g in got] == [
        f"{REL}/warnings_only/postoffices/po.yaml:5:3",
        f"{REL}/warnings_only/site.yaml:6:24",
        f"{REL}/warnings_only/site.yaml:7:20",
    ]
    assert "no postmaster mailbox" in got[0][1]
    assert "forges a local From" in got[1][1]
    assert "open relay" in got[2][1]


def test_example_site_is_valid_and_its_expectations_pass() -> None:
    root = Path(__file__).parent.parent.parent / "sites" / "example"
    config = load_site(root)
    report = run_expectations(config, Directory(config))
    assert report.ok, report.diagnostics
    assert report.routes >= 5 and report.relay >= 3
