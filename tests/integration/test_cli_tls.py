"""`mailplat tls self-signed` run as the installed command: bad folders, existing pairs, hosts.

A DIR that is a file (or under one) is one `error:` line, never a traceback;
an existing cert.pem/key.pem is replaced only with --force (--if-missing
keeps it); --host takes a host name or an IP address, and an IP lands in the
certificate as an IP subjectAltName.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from tests.fixtures.clirun import run_process


def one_error(res: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line of a failed command (exit 1, nothing else on stderr)."""
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_a_file_as_dir_is_one_error_line(tmp_path: Path) -> None:
    afile = tmp_path / "passwd"
    afile.write_text("root:x:0:0::/root:/bin/sh\n")
    line = one_error(run_process("tls", "self-signed", afile))
    assert f"{afile} is not a folder" in line
    line = one_error(run_process("tls", "self-signed", afile / "tls"))
    assert f"cannot write the certificate into {afile / 'tls'}: Not a directory" in line
    assert afile.read_text() == "root:x:0:0::/root:/bin/sh\n"


def test_an_existing_pair_is_replaced_only_with_force(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    assert run_process("tls", "self-signed", tls).returncode == 0
    before = {name: (tls / name).read_bytes() for name in ("cert.pem", "key.pem")}

    line = one_error(run_process("tls", "self-signed", tls, "--host", "mx.example.test"))
    assert "already exist" in line and "--force" in line and "--if-missing" in line
    kept = run_process("tls", "self-signed", tls, "--if-missing")
    assert kept.returncode == 0 and "certificate exists" in kept.stdout
    assert {name: (tls / name).read_bytes() for name in before} == before

    replaced = run_process("tls", "self-signed", tls, "--force", "--host", "mx.example.test")
    assert replaced.returncode == 0, replaced.stderr
    assert (tls / "key.pem").read_bytes() != before["key.pem"]
    assert (tls / "key.pem").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tls.iterdir()) == ["cert.pem", "key.pem"]
    one_error(run_process("tls", "self-signed", tls, "--force", "--if-missing"))


def test_half_a_pair_is_kept_even_with_if_missing(tmp_path: Path) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "key.pem").write_text("the key a CA signed\n")
    line = one_error(run_process("tls", "self-signed", tls, "--if-missing"))
    assert f"{tls / 'key.pem'} already exists: --force replaces it" in line
    assert (tls / "key.pem").read_text() == "the key a CA signed\n"
    assert not (tls / "cert.pem").exists()


@pytest.mark.parametrize("host", ['bad host/"', "999.1.1.1", "", "a_b.test", "-x.test", "[::1"])
def test_a_host_that_is_no_host_name_nor_ip_is_refused(host: str, tmp_path: Path) -> None:
    line = one_error(run_process("tls", "self-signed", tmp_path / "tls", "--host", host))
    assert "not a" in line and repr(host) in line
    assert not (tmp_path / "tls").exists()


def _san(cert: Path) -> x509.SubjectAlternativeName:
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    return loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_ip_and_idn_hosts_are_named_as_such(tmp_path: Path) -> None:
    res = run_process("tls", "self-signed", tmp_path / "ip", "--host", "192.0.2.7")
    assert res.returncode == 0, res.stderr
    san = _san(tmp_path / "ip" / "cert.pem")
    assert ipaddress.ip_address("192.0.2.7") in san.get_values_for_type(x509.IPAddress)
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    res = run_process("tls", "self-signed", tmp_path / "idn", "--host", "mail.münchen.test")
    assert res.returncode == 0, res.stderr
    names = _san(tmp_path / "idn" / "cert.pem").get_values_for_type(x509.DNSName)
    assert names == ["mail.xn--mnchen-3ya.test", "localhost"]
