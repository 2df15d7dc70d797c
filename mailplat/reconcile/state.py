"""The applied generation: what `mailplat apply` last put in place, on disk.

Input: a data root. Output: a Generation (number, config digest, when and by
whom, and a JSON snapshot of the applied models) read from or written to
`<data>/state/generation.json`. The snapshot is what `plan` diffs against, so
a plan never needs the old YAML (it may be gone from the working tree).

Guarantee: the file is replaced atomically (tmp -> fsync -> rename -> fsync
of the directory), so a crash leaves either the old generation or the new one,
never a torn file. A copy of every generation is kept under
`state/generations/` for audit and rollback.
"""

from __future__ import annotations

import json
import os
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailplat.config.load import SiteConfig
from mailplat.core.durable import fsync_dir, write_all
from mailplat.core.errors import MailplatError

# Bumped when the snapshot layout changes; an older layout is read as "unknown".
SNAPSHOT_FORMAT = 1
STATE_DIR = "state"
GENERATION_FILE = "generation.json"
# number, digest, when and by whom, without the snapshot: a running server
# compares it on every reload instead of parsing the whole snapshot again.
HEAD_FILE = "generation.head.json"

Snapshot = dict[str, Any]


class StateError(MailplatError):
    """The applied state on disk cannot be read."""


@dataclass(frozen=True)
class Generation:
    """One applied configuration."""

    number: int
    digest: str
    applied_at: str  # ISO 8601, UTC
    applied_by: str
    snapshot: Snapshot

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "digest": self.digest,
            "applied_at": self.applied_at,
            "applied_by": self.applied_by,
            "snapshot": self.snapshot,
        }


# Dumps of postoffice models by object identity. A reload reuses the model of
# every unchanged file (LoadCache), so only changed postoffices are dumped
# again. The dumps are shared: nobody may mutate a snapshot.
_DUMPS: dict[int, tuple[weakref.ref[Any], dict[str, Any]]] = {}


def _dump(model: Any) -> dict[str, Any]:
    key = id(model)
    hit = _DUMPS.get(key)
    if hit is not None and hit[0]() is model:
        return hit[1]
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)

    def forget(_ref: weakref.ref[Any], k: int = key) -> None:
        _DUMPS.pop(k, None)

    _DUMPS[key] = (weakref.ref(model, forget), dumped)
    return dumped


def snapshot(config: SiteConfig) -> Snapshot:
    """The applied models as plain JSON data (aliases as written in YAML)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "site": config.site.model_dump(mode="json", by_alias=True),
        "postoffices": {name: _dump(po) for name, po in sorted(config.postoffices.items())},
    }


def state_dir(data_root: Path) -> Path:
    return data_root / STATE_DIR


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def read_generation(data_root: Path) -> Generation | None:
    """The last applied generation, or None when nothing was applied yet."""
    path = state_dir(data_root) / GENERATION_FILE
    try:
        raw = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(raw)
        return Generation(
            number=int(data["number"]),
            digest=str(data["digest"]),
            applied_at=str(data["applied_at"]),
            applied_by=str(data["applied_by"]),
            snapshot=dict(data["snapshot"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"{path} is damaged ({exc}); move it away to plan against an empty state"
        ) from exc


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: tmp, fsync, rename, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_generation(data_root: Path, generation: Generation) -> Path:
    """Write the generation (history copy first, then the current pointer); return its path."""
    folder = state_dir(data_root)
    body = (json.dumps(generation.to_json(), sort_keys=True, separators=(",", ":")) + "\n").encode(
        "utf-8"
    )
    atomic_write(folder / "generations" / f"{generation.number:06d}.json", body)
    target = folder / GENERATION_FILE
    atomic_write(target, body)
    head = {k: v for k, v in generation.to_json().items() if k != "snapshot"}
    atomic_write(folder / HEAD_FILE, (json.dumps(head, sort_keys=True) + "\n").encode("utf-8"))
    return target


def read_generation_head(data_root: Path) -> Generation | None:
    """The last applied generation without its snapshot (snapshot is {}).

    Falls back to the full file when the head is missing or disagrees with it
    (written by an older version, or a crash between the two writes).
    """
    folder = state_dir(data_root)
    try:
        # Written after the full file: an older head is stale (a crash between).
        if (folder / HEAD_FILE).stat().st_mtime_ns < (folder / GENERATION_FILE).stat().st_mtime_ns:
            raise ValueError("stale head")
        data = json.loads((folder / HEAD_FILE).read_text("utf-8"))
        head = Generation(
            number=int(data["number"]),
            digest=str(data["digest"]),
            applied_at=str(data["applied_at"]),
            applied_by=str(data["applied_by"]),
            snapshot={},
        )
    except (OSError, ValueError, KeyError, TypeError):
        full = read_generation(data_root)
        if full is None:
            return None
        return Generation(full.number, full.digest, full.applied_at, full.applied_by, {})
    return head
