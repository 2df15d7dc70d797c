"""Password hashing and verification.

New hashes are argon2id (argon2-cffi). bcrypt (`$2a$/$2b$/$2y$`) and
SHA512-crypt (`$6$`, via libpass) verify too, so users can bring hashes from
Dovecot or Postfix setups; Dovecot's `{SCHEME}` prefix is accepted.
Verification never raises on a malformed hash: it answers False.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from typing import Any

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailplat.config.models.postoffice import strip_scheme

_argon2 = PasswordHasher()
_passlib_lock = threading.Lock()
_passlib: list[Any] = []
_dummy_lock = threading.Lock()
_dummy: list[str] = []


def _dummy_hash() -> str:
    """An argon2id hash of a random secret, made once, with the default cost.

    Checking a password for an unknown user (or a mailbox with no password)
    against it costs what checking a real hash costs, so the time a failed
    login takes does not tell whether the account exists.
    """
    with _dummy_lock:
        if not _dummy:
            _dummy.append(_argon2.hash(secrets.token_urlsafe(16)))
        return _dummy[0]


def _sha512_crypt() -> Any:
    """passlib's sha512_crypt, imported once under a lock.

    passlib.hash resolves its names lazily, and two worker threads doing the
    first lookup at the same time can both fail (seen under 20 concurrent POP3
    logins); the import is also slow, so only servers with such hashes pay it.
    """
    with _passlib_lock:
        if not _passlib:
            from passlib.hash import sha512_crypt

            _passlib.append(sha512_crypt)
        return _passlib[0]


def warm_up() -> None:
    """Make the dummy hash now (blocking), so the first unknown-user login is not slower."""
    _dummy_hash()


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _argon2.hash(password)


def random_password(length: int = 20) -> str:
    """A random password of URL-safe characters."""
    return secrets.token_urlsafe(length)[:length]


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches the stored hash (argon2, bcrypt or SHA512-crypt).

    No hash (an unknown user, a mailbox without a password) is checked against
    a dummy hash and answers False after the same work.
    """
    if not stored:
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            _argon2.verify(_dummy_hash(), password)
        return False
    crypt = strip_scheme(stored)
    try:
        if crypt.startswith("$argon2"):
            return _argon2.verify(crypt, password)
        if crypt.startswith(("$2a$", "$2b$", "$2y$")):
            # bcrypt's C code knows $2b$; $2y$ and $2a$ are the same algorithm.
            fixed = "$2b$" + crypt[4:]
            return bcrypt.checkpw(password.encode("utf-8")[:72], fixed.encode("ascii"))
        if crypt.startswith("$6$"):
            return bool(_sha512_crypt().verify(password, crypt))
    except (VerifyMismatchError, VerificationError, InvalidHashError, ValueError):
        return False
    return False
