"""`mailplat serve` prints "try it" hints about the site it serves, never another site's password.

Real `mailplat serve` processes: a site whose mailboxes are not the
example's gets hints naming one of its own mailboxes and no password; a site
that keeps the example's public `<name>-secret` password gets it shown.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

from tests.e2e.serveproc import serve, site_with_ports
from tests.support import base_postoffice, pw


def _serve_output(site: Path, data: Path, port: int) -> str:
    with serve(site, data, port) as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    return (data.parent / f"serve-{port}.log").read_text()


def test_hints_name_a_mailbox_of_this_site_and_no_password(tmp_path: Path) -> None:
    postoffice = {
        "domains": {"corp.test": {}},
        "mailboxes": {
            "postmaster": {"password": pw("postmaster-secret")},
            "zoe": {"password": pw("a real passphrase 42")},
        },
    }
    site, ports = site_with_ports(
        tmp_path,
        site={"server": {"default_postoffice": "corp", "local_domain": "corp.test"}},
        postoffices={"corp": postoffice},
    )
    text = _serve_output(site, tmp_path / "data", ports["smtp"])
    assert f"swaks --server 127.0.0.1:{ports['smtp']} --to zoe@corp.test" in text
    assert f"login zoe@corp, its password, 127.0.0.1:{ports['pop3']}" in text
    assert "alice" not in text and "secret" not in text and "example.test" not in text


def test_the_example_password_is_shown_only_where_it_is_true(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path, postoffices={"example": base_postoffice()})
    text = _serve_output(site, tmp_path / "data", ports["smtp"])
    assert re.search(r"--to alice@example\.(test|org) ", text), text
    assert f"login alice@example, password alice-secret, 127.0.0.1:{ports['pop3']}" in text
