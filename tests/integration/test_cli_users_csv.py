"""`mailplat users import|export` with the CSV files real spreadsheets write, as the real command.

Excel's "CSV UTF-8" starts with a byte order mark, its plain CSV on Windows
is cp1252: the BOM is accepted, a non-UTF-8 file is one error naming the line
and what to do (or is read as the --encoding it names); rows read from stdin
are `<stdin>:LINE`; every bad row is its own error line; an unknown
--postoffice on export is an error naming the postoffices that exist.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from mailplat.auth.passwords import verify_password
from mailplat.config.load import load_site
from tests.fixtures.clirun import copy_example, mailplat_exe, run_process


def _errors(res: subprocess.CompletedProcess[str]) -> list[str]:
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), res.stderr
    return lines


def _import(
    csv: Path | str, site: Path, *extra: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [mailplat_exe(), "users", "import", str(csv), str(site), "-p", "example", *extra],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        res.args, res.returncode, res.stdout.decode(), res.stderr.decode()
    )


def test_excel_csv_utf8_with_bom_keeps_its_header(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    csv = tmp_path / "bom.csv"
    csv.write_bytes(
        b"\xef\xbb\xbfemailaddress,password,quota\r\nzed@example.test,pw-z\xc3\xa9d,5\r\n"
    )
    res = _import(csv, site)
    assert res.returncode == 0, res.stderr
    assert "1 added" in res.stdout
    zed = load_site(site).postoffices["example"].mailboxes["zed"]
    assert zed.quota_mb == 5
    assert zed.password is not None and verify_password(zed.password, "pw-zéd")


def test_a_windows_1252_file_says_what_it_needs_and_is_read_when_named(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    before = (site / "postoffices" / "example.yaml").read_text()
    csv = tmp_path / "excel.csv"
    csv.write_bytes(b"emailaddress,password,quota\r\nzed@example.test,caf\xe9-secret,5\r\n")
    (line,) = _errors(_import(csv, site))
    assert line.startswith(f"error: {csv}:2: byte 0xe9 is not UTF-8")
    assert "CSV UTF-8" in line and "--encoding cp1252" in line
    assert (site / "postoffices" / "example.yaml").read_text() == before

    res = _import(csv, site, "--encoding", "cp1252")
    assert res.returncode == 0, res.stderr
    zed = load_site(site).postoffices["example"].mailboxes["zed"]
    assert zed.password is not None and verify_password(zed.password, "café-secret")
    (line,) = _errors(_import(csv, site, "--encoding", "no-such-codec"))
    assert "unknown encoding 'no-such-codec'" in line


def test_stdin_rows_are_named_stdin_and_every_bad_row_is_a_line(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    rows = b"a1@example.test,x,1\na2@example.test,x,1\na3@example.test,x,1\neve@shop.test,x,1\n"
    (line,) = _errors(_import("-", site, stdin=rows))
    assert line == "error: <stdin>:4: domain shop.test belongs to postoffice shop, not example"

    bad = b"emailaddress,password,quota\nnot-an-email,x,1\nq@example.test,x,abc\n"
    lines = _errors(_import("-", site, stdin=bad))
    assert lines == [
        "error: <stdin>:2: 'not-an-email' is not a mail address",
        "error: <stdin>:3: quota 'abc' is not a number of MB or unlimited",
    ]
    csv = tmp_path / "u.csv"
    csv.write_text('a@example.test,"two\nlines",1\neve@shop.test,x,1\n')
    (line,) = _errors(_import(csv, site))
    assert line.startswith(f"error: {csv}:3: domain shop.test")


def test_export_of_an_unknown_postoffice_names_those_that_exist(tmp_path: Path) -> None:
    site = copy_example(tmp_path)
    res = run_process("users", "export", site, "--postoffice", "nope")
    (line,) = _errors(res)
    assert line == f"error: no postoffice 'nope' in {site}; it has: example, shop"
    assert res.stdout == ""
    shop = run_process("users", "export", site, "--postoffice", "shop", "--fields", "email")
    assert shop.returncode == 0 and shop.stdout == "dave@shop.test\n"
