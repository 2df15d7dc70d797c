"""DKIM private key files: where each declared key lives, and whether it is usable.

Input: a SiteConfig (domains with `dkim:` keys). Output: DeclaredKey per
key (domain, selector, algorithm, the file's path), load_key() to read one
(PEM, RSA or Ed25519, checked against the declared algorithm and, for RSA,
at least 1024 bits), and check_dkim_keys() for `validate`, `serve` and a
reload (not the loader: a site checked away from the mail host has no keys):
one Diagnostic per key that is missing, unreadable or of the wrong kind. Keys are files on the host like TLS keys, never in git; a relative
path is relative to the site folder. Reading files is all this does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailplat.config.diagnostics import Diagnostic, error
from mailplat.config.load import SiteConfig, locate
from mailplat.config.models.postoffice import DkimAlgorithm

MIN_RSA_BITS = 1024  # RFC 8301 §3.2: signers MUST use at least 1024 bits
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class KeyProblem(Exception):
    """A key file that cannot be used; the message says why and what to do."""

    def __init__(self, message: str, unreadable: bool = False) -> None:
        super().__init__(message)
        self.unreadable = unreadable  # permission denied (not missing, not malformed)


@dataclass(frozen=True, slots=True)
class DeclaredKey:
    """One `dkim.keys` entry of one domain, its file resolved."""

    postoffice: str
    domain: str
    index: int  # position in the domain's dkim.keys (for diagnostics)
    selector: str
    algorithm: DkimAlgorithm
    path: Path
    sign: bool

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def default_key_file(domain: str, selector: str) -> str:
    return f"dkim/{domain}.{selector}.pem"


def declared_keys(config: SiteConfig, domain: str | None = None) -> list[DeclaredKey]:
    """Every DKIM key the site declares (or one domain's), in file order."""
    out: list[DeclaredKey] = []
    for po_name, po in config.postoffices.items():
        for dname, dom in po.domains.items():
            if dom.dkim is None or (domain is not None and dname != domain):
                continue
            for i, key in enumerate(dom.dkim.keys):
                path = Path(key.key_file or default_key_file(dname, key.selector))
                if not path.is_absolute():
                    path = config.root / path
                out.append(
                    DeclaredKey(po_name, dname, i, key.selector, key.algorithm, path, key.sign)
                )
    return out


def load_key(path: Path, algorithm: DkimAlgorithm) -> PrivateKey:
    """The private key in a PEM file, checked against the declared algorithm."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyProblem(f"DKIM key file {path} not found") from None
    except PermissionError as exc:
        raise KeyProblem(f"DKIM key file {path}: {exc.strerror or exc}", unreadable=True) from None
    except OSError as exc:
        raise KeyProblem(f"DKIM key file {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyProblem(
            f"DKIM key file {path} is not an unencrypted PEM private key ({exc})"
        ) from None
    if algorithm == "ed25519":
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyProblem(f"DKIM key file {path} is not an Ed25519 key, as declared")
        return key
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyProblem(f"DKIM key file {path} is not an RSA key (declared rsa-sha256)")
    if key.key_size < MIN_RSA_BITS:
        raise KeyProblem(
            f"DKIM key file {path} has {key.key_size} bits; RSA keys need at least "
            f"{MIN_RSA_BITS} (RFC 8301), 2048 recommended"
        )
    return key


class KeyRing:
    """The keys a running server has read, so a reload after dropping root keeps them.

    `mailplat dkim keygen` run as root makes root-owned 0600 files; a server
    that starts as root and drops to `server.user` reads them at start (into
    this ring) and can no longer read them afterwards. A file it may not read
    again but has loaded keeps its key (a warning says to make it readable
    so a rotated key reaches the server); any other problem is an error.
    """

    def __init__(self) -> None:
        self._keys: dict[tuple[Path, str], PrivateKey] = {}
        self.kept: set[Path] = set()  # loaded once, unreadable now

    def get(self, path: Path, algorithm: DkimAlgorithm) -> PrivateKey:
        """The key in PATH, read again each time (rotation), or kept when now unreadable."""
        try:
            key = load_key(path, algorithm)
        except KeyProblem as exc:
            if exc.unreadable and (path, algorithm) in self._keys:
                self.kept.add(path)
                return self._keys[(path, algorithm)]
            raise
        self.kept.discard(path)
        self._keys[(path, algorithm)] = key
        return key


def check_dkim_keys(config: SiteConfig, ring: KeyRing | None = None) -> list[Diagnostic]:
    """An error for each declared key that is missing, unreadable or not as declared.

    Not part of loading a site: the keys live on the mail host, so a site
    checked elsewhere (a git hook's export, `mailplat dkim keygen` itself)
    loads without them. `validate`, `serve` and a reload call this; the
    server passes its KeyRing, which then holds every key it checked.
    """
    out: list[Diagnostic] = []
    for key in declared_keys(config):
        try:
            if ring is not None:
                ring.get(key.path, key.algorithm)
            else:
                load_key(key.path, key.algorithm)
        except KeyProblem as exc:
            out.append(
                error(
                    config.file_of(key.postoffice),
                    ("domains", key.domain, "dkim", "keys", key.index),
                    str(exc),
                    f"create it with `mailplat dkim keygen {config.root} --domain {key.domain}` "
                    "(keys stay on this host, never in git), or point key_file at it",
                )
            )
    files = {
        config.file_of(po): config.root / "postoffices" / f"{po}.yaml" for po in config.postoffices
    }
    return locate(out, files)
