"""TLS material: make a self-signed certificate, build server SSL contexts.

A self-signed certificate is what `make run` uses for the example site; real
sites point `tls:` at their own PEM files. The certificate's host must be a
host name or an IP address (`check_host`; TlsError otherwise), and the pair is
written next to its final names and renamed into place, so a failure never
leaves a new key beside an old certificate. Contexts are built per listener
from the files named in the config, so a changed certificate is used for new
connections after a reload.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailplat.core.address import normalise_domain
from mailplat.core.errors import AddressError, MailplatError

Host = str | ipaddress.IPv4Address | ipaddress.IPv6Address


class TlsError(MailplatError):
    """A certificate cannot be made as asked (the host is not a host name or an IP)."""


def check_host(text: str) -> Host:
    """`text` as a certificate can name it: an IP address, or a host name in A-labels.

    Anything else (spaces, quotes, slashes, `999.1.1.1`) raises TlsError: a
    subjectAltName dNSName is an LDH host name (RFC 5280 §4.2.1.6, RFC 1123 §2.1).
    """
    host = text.strip()
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(literal)
    except ValueError:
        pass
    problem = f"{text!r} is not a host name or an IP address"
    if not host or host.startswith("["):
        raise TlsError(problem)
    try:
        name = normalise_domain(host)
    except AddressError as exc:
        raise TlsError(problem) from exc
    # RFC 1123 §2.1: a top-level label is never all digits, so 999.1.1.1 is a bad IP.
    if name.rsplit(".", 1)[-1].isdigit():
        raise TlsError(f"{text!r} is not a valid IP address, nor a host name")
    return name


def _subject_names(host: Host) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for item in (host, "localhost", ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")):
        general = x509.DNSName(item) if isinstance(item, str) else x509.IPAddress(item)
        if general not in names:
            names.append(general)
    return names


def make_self_signed(directory: Path, host: str, days: int = 825) -> tuple[Path, Path]:
    """Write cert.pem and key.pem (ECDSA P-256) for `host`, localhost and 127.0.0.1.

    Replaces an existing pair (callers decide whether that is wanted); TlsError
    for a bad host, OSError when the folder cannot be made or written.
    """
    checked = check_host(host)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(checked))])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName(_subject_names(checked))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_tmp, cert_tmp = directory / ".key.pem.tmp", directory / ".cert.pem.tmp"
    try:
        _write(key_tmp, key_bytes, 0o600)
        _write(cert_tmp, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        os.replace(key_tmp, key_path)
        os.replace(cert_tmp, cert_path)
    finally:
        key_tmp.unlink(missing_ok=True)
        cert_tmp.unlink(missing_ok=True)
    return cert_path, key_path


def _write(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL after a stale unlink: the key file is never readable by others, not even briefly.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


# TLS 1.2 suites with forward secrecy and AEAD only: no CBC (LUCKY13 and its
# kin), no RSA key exchange. TLS 1.3 suites are all AEAD and not set here.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!DSS"


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context with modern defaults (TLS 1.2+, AEAD ciphers only)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
