"""Making DKIM keys: generate one, write it owner-only, and say what to publish.

Input: a declared key (config/dkimkeys.DeclaredKey). Output: the key file,
written 0600 into a folder made 0700, never overwriting one that exists
(rotation means a new selector, not a new key under an old name); in a
`dkim/` folder inside the site we also leave a `.gitignore` of `*`, so the
private keys cannot be committed with the site by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailplat.config.dkimkeys import DeclaredKey, PrivateKey, load_key
from mailplat.trust.dkim import public_record

RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class Made:
    key: DeclaredKey
    record: str  # the TXT value to publish at key.dns_name
    created: bool  # False: the file was there already and was kept


def generate(algorithm: str, bits: int = RSA_BITS) -> PrivateKey:
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure(key: DeclaredKey, site_root: Path, bits: int = RSA_BITS) -> Made:
    """The key file for `key` (made now unless it exists) and its DNS record."""
    if key.path.exists():
        return Made(key, public_record(load_key(key.path, key.algorithm)), False)
    private = generate(key.algorithm, bits)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key.path, pem)
    folder = key.path.parent
    if folder.name == "dkim" and folder.parent == site_root:
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# DKIM private keys stay on this host (mailplat dkim keygen)\n*\n")
    return Made(key, public_record(private), True)


def zone_line(name: str, text: str) -> str:
    """A TXT record in zone-file form, split in strings of at most 255 octets (RFC 1035)."""
    chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    quoted = " ".join(f'"{c}"' for c in chunks)
    return f"{name}. IN TXT {quoted}" if len(chunks) == 1 else f"{name}. IN TXT ( {quoted} )"
