"""The spool's quarantine/: damaged data set aside once, described, never retried.

Input: bytes of the journal a worker or recovery could not trust (a frame
whose checksum fails, a message whose text was in damaged bytes) and what is
known about it. Output: quarantine/<name> holding those bytes and, beside it,
quarantine/<name>.json: when, why, which message, and, when the envelope
could still be read, the sender and original recipients plus "notify": true,
so the MTA agent tells the sender once (then "notified").
Guarantee: a quarantined entry is never deleted here and never delivered; an
admin reads it with `mailplat queue quarantine`. Both files are written
durably; an entry's name is derived from where the damage was, so the same
damage found at a later start is recognised and never reported twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from mailplat.core.durable import fsync_dir, write_all
from mailplat.core.envelope import Envelope

INFO_SUFFIX = ".json"
DIR = "quarantine"


def info_path(qdir: Path, name: str) -> Path:
    return qdir / f"{name}{INFO_SUFFIX}"


def envelope_facts(env: Envelope) -> dict[str, Any]:
    """What a sender notice needs: who sent it, to whom (as they wrote it), when."""
    return {
        "from": env.mail_from,
        "rcpts": [env.get(f"orig:{r}", r) for r in env.rcpts],
        "received_at": env.received_at,
        "client_ip": env.client_ip,
    }


def _write_info(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, json.dumps(info, sort_keys=True).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def exists(root: Path, name: str) -> bool:
    """True when an entry of that name was set aside already (at this start or an earlier one)."""
    return (root / DIR / name).exists() or info_path(root / DIR, name).exists()


def write(root: Path, name: str, raw: bytes, why: str, info: dict[str, Any]) -> str:
    """Set damaged bytes aside as entry `name` with its info file; the name. Blocking."""
    qdir = root / DIR
    qdir.mkdir(parents=True, exist_ok=True)
    entry = {"name": name, "at": time.time(), "why": why, "source": "journal"}
    entry.update(info)
    _write_info(info_path(qdir, name), entry)
    tmp = qdir / f"{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, qdir / name)
    fsync_dir(qdir)
    return name


def quarantined_ids(root: Path) -> set[str]:
    """Message ids already set aside: replay must not bring them back."""
    return {str(e["id"]) for e in entries(root) if e.get("id")}


def move(root: Path, path: Path, why: str, info: dict[str, Any] | None = None) -> str:
    """Move one spool file into quarantine/ with its info file; the entry's name.

    Both directories are fsynced: a move lost in a crash would put the file
    back where a worker finds it, and its sender would be told twice.
    Blocking; damage is rare, so there is no batching here.
    """
    qdir = root / DIR
    name = f"{path.parent.name}-{path.name}"
    if (qdir / name).exists():  # never overwrite what an admin has not looked at yet
        name = f"{name}-{time.time_ns()}"
    entry = {"name": name, "at": time.time(), "why": why, "source": f"{path.parent.name}"}
    entry.update(info or {})
    _write_info(info_path(qdir, name), entry)
    os.replace(path, qdir / name)
    fsync_dir(qdir)
    fsync_dir(path.parent)
    return name


def mark_notified(root: Path, name: str, notice_id: str) -> None:
    """Record that the sender was told (or that nobody could be), so it happens once."""
    path = info_path(root / DIR, name)
    info = read_info(root, name)
    info["notify"] = False
    info["notified"] = notice_id
    _write_info(path, info)
    fsync_dir(path.parent)


def read_info(root: Path, name: str) -> dict[str, Any]:
    """The info of one entry; a file quarantined without one gets the facts its name holds."""
    try:
        info = json.loads(info_path(root / DIR, name).read_text(encoding="utf-8"))
        if isinstance(info, dict):
            return info
    except (OSError, ValueError):
        pass
    source, _, rest = name.partition("-")
    stat = (root / DIR / name).stat() if (root / DIR / name).exists() else None
    return {
        "name": name,
        "source": source,
        "id": rest.split(".")[0],
        "at": stat.st_mtime if stat else 0.0,
        "why": "unknown",
    }


def names(root: Path) -> list[str]:
    """Every quarantined entry (files, not their info), oldest name first."""
    try:
        listing = os.listdir(root / DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in listing if not n.endswith((INFO_SUFFIX, ".tmp")))


def entries(root: Path) -> list[dict[str, Any]]:
    """The info of every entry, oldest first."""
    out = [read_info(root, n) for n in names(root)]
    return sorted(out, key=lambda e: (float(e.get("at", 0.0)), str(e.get("name"))))


def pending_notices(root: Path) -> list[dict[str, Any]]:
    """Entries whose sender must still be told."""
    return [e for e in entries(root) if e.get("notify")]


def content(root: Path, name: str, limit: int = 64 * 1024) -> bytes:
    """The start of a quarantined file (the header section of a message, damaged or not)."""
    path = root / DIR / name
    if path.name != name or name.endswith(INFO_SUFFIX) or not path.is_file():
        raise FileNotFoundError(name)
    with path.open("rb") as fh:
        return fh.read(limit)
