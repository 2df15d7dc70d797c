"""`mailplat apply` against a running server at the edges: nothing changed, a busy port, a silent server.

- No YAML changed but the certificate was renewed: apply still tells the
  server, and new STARTTLS handshakes present the new certificate.
- A listener moved to a port something else holds: the rest is live, the
  listener stays, and apply exits 1 saying so (scripts must see it).
- A server holds the data root but its control socket does not answer (it
  is starting): apply refuses in one line rather than write beside it.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

from tests.e2e.serveproc import mailplat, serve, site_with_ports
from tests.support import dump, load_yaml


def _served_cert(port: int) -> bytes:
    """The DER certificate the SMTP listener presents after STARTTLS."""
    import smtplib  # noqa: PLC0415

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.starttls(context=ctx)
        sock = s.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der
        return der


def test_apply_with_no_yaml_change_reloads_a_renewed_certificate(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path)
    data = tmp_path / "data"
    assert mailplat("apply", str(site), "--data", str(data), "--yes").returncode == 0
    with serve(site, data, ports["smtp"]):
        before = _served_cert(ports["smtp"])
        renewed = mailplat(
            "tls", "self-signed", str(tmp_path / "tls"), "--force", "--host", "x.test"
        )
        assert renewed.returncode == 0, renewed.stderr
        res = mailplat("apply", str(site), "--data", str(data))  # nothing to confirm: no --yes
        assert res.returncode == 0, res.stdout + res.stderr
        assert "No changes." in res.stdout
        assert "unchanged, reloaded by the running server" in res.stdout
        assert "no YAML file changed" in res.stdout
        assert _served_cert(ports["smtp"]) != before


def test_apply_that_cannot_bind_a_moved_listener_exits_1(tmp_path: Path) -> None:
    site, ports = site_with_ports(tmp_path)
    data = tmp_path / "data"
    assert mailplat("apply", str(site), "--data", str(data), "--yes").returncode == 0
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    try:
        with serve(site, data, ports["smtp"]):
            doc = load_yaml(site / "site.yaml")
            doc["listeners"]["pop3"]["bind"] = [f"127.0.0.1:{busy}"]
            doc.setdefault("smtp", {})["max_hops"] = 40
            dump(site / "site.yaml", doc)
            res = mailplat("apply", str(site), "--data", str(data), "--yes")
            assert res.returncode == 1, res.stdout + res.stderr
            assert "Live: generation 2" in res.stdout
            assert "listeners unchanged" in res.stderr and str(busy) in res.stderr
            assert "Traceback" not in res.stderr
    finally:
        holder.close()


HOLD = """
import sys, time
from pathlib import Path
from mailplat.control import lock
fd = lock.acquire(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()
"""


def test_apply_refuses_beside_a_server_that_does_not_answer(tmp_path: Path) -> None:
    site, _ = site_with_ports(tmp_path)
    data = tmp_path / "data"
    (data / "state").mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        res = mailplat("apply", str(site), "--data", str(data), "--yes")
        assert res.returncode == 1, res.stdout + res.stderr
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"pid {proc.pid}" in errors[0], res.stderr
        assert "does not" in res.stderr and "answer" in res.stderr
        assert not (data / "postoffices").exists()  # nothing written beside it
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
