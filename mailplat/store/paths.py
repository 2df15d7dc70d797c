"""Map (postoffice, mailbox) names to Maildir directories, refusing unsafe names.

Input: a data root and two names taken from config or from a login.
Output: `<data_root>/postoffices/<postoffice>/<mailbox>`.
Guarantee: the result is always a direct grandchild of `<data_root>/postoffices`;
a name with `/`, `..`, NUL, a leading dot or any character outside
[A-Za-z0-9._-] raises ValueError before any path is built.
"""

from __future__ import annotations

import re
from pathlib import Path

# NAME_MAX on Linux file systems; longer names could never be created anyway.
MAX_NAME = 255
_NAME = re.compile(r"[A-Za-z0-9._-]+")


def check_name(name: str, what: str = "name") -> str:
    """Return `name` unchanged when it is safe as one path component; else raise ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string")
    if len(name) > MAX_NAME:
        raise ValueError(f"{what} is longer than {MAX_NAME} characters")
    # fullmatch, not match with $: `$` would accept a trailing newline.
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} may only hold A-Z, a-z, 0-9, '.', '_' and '-'")
    # A leading dot covers '.', '..' and hidden Maildir++ folders; '..' anywhere
    # is refused too so no later join or split can turn it into a parent step.
    if name.startswith(".") or ".." in name:
        raise ValueError(f"{what} {name!r} may not start with '.' or contain '..'")
    return name


def mailbox_dir(data_root: Path, postoffice: str, mailbox: str) -> Path:
    """The Maildir directory of one mailbox; ValueError for an unsafe name."""
    return (
        data_root
        / "postoffices"
        / check_name(postoffice, "postoffice name")
        / check_name(mailbox, "mailbox name")
    )
