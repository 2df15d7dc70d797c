"""`mailplat dkim keygen`, `validate`'s key checks, `serve` refusing a missing key, `mailplat dns`."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from tests.fixtures.clirun import run_process
from tests.support import base_postoffice, running, write_site
from tests.support_dns import DnsServer, Zone
from tests.trust.cli import run


def site_with(
    tmp_path: Path,
    dkim: Any = None,
    site: dict[str, Any] | None = None,
    tls: bool = False,
    **domain: Any,
) -> Path:
    po = base_postoffice()
    if dkim is not None:
        po["domains"]["example.test"]["dkim"] = dkim
    po["domains"]["example.test"].update(domain)
    return write_site(tmp_path, site=site, postoffices={"example": po}, tls=tls)


def test_keygen_makes_owner_only_keys_ignored_by_git_and_prints_txt(tmp_path: Path) -> None:
    site = site_with(tmp_path, {})
    result = run("dkim", "keygen", site)
    assert result.exit_code == 0, result.output
    rsa_key = site / "dkim" / "example.test.rsa1.pem"
    ed_key = site / "dkim" / "example.test.ed1.pem"
    for key in (rsa_key, ed_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((site / "dkim").stat().st_mode) == 0o700
    assert (site / "dkim" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert 'rsa1._domainkey.example.test. IN TXT ( "v=DKIM1; k=rsa; p=' in result.stdout
    assert 'ed1._domainkey.example.test. IN TXT "v=DKIM1; k=ed25519; p=' in result.stdout
    # A second run keeps the keys: same records, nothing overwritten.
    before = rsa_key.read_bytes()
    again = run("dkim", "keygen", site, "--domain", "example.test")
    assert again.exit_code == 0 and "kept existing" in again.stdout
    assert rsa_key.read_bytes() == before


def test_keygen_without_declared_keys_says_what_to_add(tmp_path: Path) -> None:
    site = site_with(tmp_path)
    result = run("dkim", "keygen", site)
    assert result.exit_code == 1
    assert "add `dkim: {}`" in result.stderr and "Traceback" not in result.output
    other = run("dkim", "keygen", site, "--domain", "nowhere.test")
    assert other.exit_code == 1 and "not a domain of site" in other.stderr


def test_validate_checks_key_files_exist_and_match_the_algorithm(tmp_path: Path) -> None:
    site = site_with(
        tmp_path, {"keys": [{"selector": "k1", "algorithm": "ed25519", "key_file": "k1.pem"}]}
    )
    missing = run("validate", site)
    assert missing.exit_code == 1
    assert "postoffices/example.yaml:" in missing.stderr
    assert "DKIM key file" in missing.stderr and "not found" in missing.stderr
    assert "mailplat dkim keygen" in missing.stderr
    # An RSA key where ed25519 is declared is refused too.
    site_rsa = site_with(tmp_path / "b", {"keys": [{"selector": "k1", "key_file": "k1.pem"}]})
    assert run("dkim", "keygen", site_rsa).exit_code == 0
    (site / "k1.pem").write_bytes((site_rsa / "k1.pem").read_bytes())
    wrong = run("validate", site)
    assert wrong.exit_code == 1 and "is not an Ed25519 key" in wrong.stderr
    assert run("validate", site_rsa).exit_code == 0


def test_serve_refuses_to_start_without_a_declared_key(tmp_path: Path) -> None:
    site = site_with(tmp_path, {})
    done = run_process("serve", site, "--data", tmp_path / "data")
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: cannot start: DKIM key file ")
    assert "(and 1 more)" in lines[0] and "mailplat dkim keygen" in lines[0]


async def test_a_reload_that_declares_a_missing_key_is_refused(tmp_path: Path) -> None:
    site = site_with(tmp_path)
    async with running(site, tmp_path / "data") as server:
        site_with(tmp_path, {"keys": [{"selector": "new"}]})
        result = await server.reload("test")
    assert result["ok"] is False
    assert result["error"] == "a DKIM key cannot be loaded"
    assert "example.test.new.pem not found" in result["errors"][0]


def records(result: Any) -> dict[tuple[str, str], dict[str, Any]]:
    doc = json.loads(result.stdout)
    return {(r["name"], r["type"]): r for r in doc["records"]}


def test_dns_lists_records_and_compares_them_with_dns(
    tmp_path: Path, dns: DnsServer, zone: Zone
) -> None:
    server = {
        "server": {"dns_servers": [dns.address], "mta_sts": {"mode": "testing"}},
        "listeners": {"submission": {"enabled": True, "bind": ["127.0.0.1:587"]}},
    }
    site = site_with(
        tmp_path,
        {"keys": [{"selector": "rsa1"}]},
        site=server,
        tls=True,
        dmarc={"rua": "dmarc@example.test"},
    )
    keygen = json.loads(run("dkim", "keygen", site, "--json").stdout)["keys"][0]
    zone.mx("example.test", (10, "mx.example.test"))
    zone.txt("example.test", "v=spf1 mx -all")
    zone.txt(keygen["name"], keygen["txt"])
    zone.txt("_dmarc.example.test", "v=DMARC1; p=reject")  # not what the site declares
    zone.a("mx.example.test", "192.0.2.25")
    zone.ptr("192.0.2.25", "mx.example.test")
    zone.mx("example.org", (10, "mx.someone-else.test"))
    result = run("dns", site, "--json")
    assert result.exit_code == 2, result.output  # something to publish
    got = records(result)
    assert got[("example.test", "MX")]["status"] == "present"
    assert got[("example.test", "TXT")]["status"] == "present"
    assert got[("rsa1._domainkey.example.test", "TXT")]["status"] == "present"
    dmarc = got[("_dmarc.example.test", "TXT")]
    assert dmarc["status"] == "different"
    assert dmarc["value"] == "v=DMARC1; p=none; rua=mailto:dmarc@example.test"
    assert got[("example.org", "MX")]["status"] == "different"
    assert got[("_dmarc.example.org", "TXT")]["status"] == "missing"
    assert got[("_submission._tcp.example.test", "SRV")]["value"] == "0 1 587 mx.example.test."
    assert got[("_mta-sts.example.test", "TXT")]["status"] == "missing"
    assert got[("mx.example.test", "A")]["status"] == "present"
    assert got[("25.2.0.192.in-addr.arpa", "PTR")]["status"] == "present"
    assert "mode: testing" in json.loads(result.stdout)["mta_sts_policy"]
    text = run("dns", site)
    assert text.exit_code == 2
    assert "different _dmarc.example.test. IN TXT" in " ".join(text.stdout.split())
    assert "DNS has: v=DMARC1; p=reject" in text.stdout


def test_dns_exits_0_when_everything_is_published(
    tmp_path: Path, dns: DnsServer, zone: Zone
) -> None:
    po = {"domains": {"solo.test": {}}, "mailboxes": {"postmaster": {}}}
    site = write_site(
        tmp_path,
        site={
            "server": {"dns_servers": [dns.address], "default_postoffice": "solo"},
            "listeners": {"pop3": {"enabled": False}},
        },
        postoffices={"solo": po},
        tls=False,
    )
    zone.mx("solo.test", (10, "mx.example.test"))
    zone.txt("solo.test", "v=spf1 mx -all")
    zone.txt("_dmarc.solo.test", "v=DMARC1; p=none")
    zone.a("mx.example.test", "192.0.2.25")
    zone.ptr("192.0.2.25", "mx.example.test")
    result = run("dns", site, "--json")
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["complete"] is True


def test_dns_says_unknown_when_dns_fails(tmp_path: Path, dns: DnsServer, zone: Zone) -> None:
    zone.servfail("example.test")
    zone.servfail("mx.example.test")  # the host's own address cannot be known either
    site = site_with(tmp_path, site={"server": {"dns_servers": [dns.address]}})
    result = run("dns", site, "--json")
    assert result.exit_code == 2 and "Traceback" not in result.output
    got = records(result)
    assert got[("example.test", "MX")]["status"] == "unknown"
    assert got[("mx.example.test", "A")]["status"] == "unknown"
    assert not any(t == "PTR" for _, t in got)


def test_plan_says_which_selector_signs_during_a_rotation(tmp_path: Path) -> None:
    from tests.fixtures.clirun import run as run_config

    old = {"keys": [{"selector": "rsa1"}, {"selector": "rsa2", "sign": False}]}
    site = site_with(tmp_path, old)
    data = tmp_path / "data"
    assert run_config("apply", site, "--yes", "--data", data).exit_code == 0
    new = {"keys": [{"selector": "rsa1", "sign": False}, {"selector": "rsa2"}]}
    site_with(tmp_path, new)
    result = run_config("plan", site, "--data", data)
    assert result.exit_code == 2
    assert "DKIM: signs with rsa2 (was: rsa1); published, not signing yet: rsa1" in result.stdout
