"""Password hashing and verification.

New hashes are argon2id (argon2-cffi). bcrypt (`$2a$/$2b$/$2y$`) and
SHA512-crypt (`$6$`, via libpass) verify too, so users can bring hashes from
Dovecot or Postfix setups; Dovecot's `{SCHEME}` prefix is accepted.
Verification never raises on a malformed hash: it answers False.
"""

from __future__ import annotations

import secrets

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailplat.config.models.postoffice import strip_scheme

_argon2 = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _argon2.hash(password)


def random_password(length: int = 20) -> str:
    """A random password of URL-safe characters."""
    return secrets.token_urlsafe(length)[:length]


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches the stored hash (argon2, bcrypt or SHA512-crypt)."""
    if not stored:
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
            from passlib.hash import sha512_crypt

            return bool(sha512_crypt.verify(password, crypt))
    except (VerifyMismatchError, VerificationError, InvalidHashError, ValueError):
        return False
    return False
