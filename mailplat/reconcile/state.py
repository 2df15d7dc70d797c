"""The applied generation: what `mailplat apply` last put in place, on disk.

Input: a data root. Output: a Generation (number, config digest, when and by
whom, a JSON snapshot of the applied models, and the digest of each file)
read from or written to `<data>/state/`. The snapshot is what `plan` diffs
against, so a plan never needs the old YAML (it may be gone from the working
tree).

Layout (format 2): `generations/NNNNNN.json` holds one generation, either a
checkpoint (the whole snapshot) or a delta against the generation before it
(site.yaml's sections if they changed, the postoffices added, changed or
removed, and their file digests). `generation.json` is a small pointer: the
generation's number, digest, who and when, and the chain of files (one
checkpoint, then deltas) whose fold is its snapshot. A one-line change to a
site of 10,000 postoffices writes one postoffice, not 40 MB twice. Every
CHECKPOINT_EVERY generations, or when a delta would hold a large part of
the site, a checkpoint starts a new chain. Format 1 (`generation.json` with
the whole snapshot inside) is still read.

Guarantee: every file is written atomically (tmp -> fsync -> rename -> fsync
of the directory), the generation's own file before the pointer, so a crash
leaves either the old generation or the new one, never a torn one. Files of
older generations are kept under `state/generations/` for audit and rollback.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailplat.config.load import SiteConfig
from mailplat.core.durable import fsync_dir, write_all
from mailplat.core.errors import MailplatError

# Bumped when the snapshot layout changes; an older layout is read as "unknown".
SNAPSHOT_FORMAT = 1
STORE_FORMAT = 2  # generation.json as a pointer to checkpoint + deltas
CHECKPOINT_EVERY = 100  # longest chain of deltas before a new checkpoint
CHECKPOINT_SHARE = 0.25  # a delta holding more of the site than this is a checkpoint
STATE_DIR = "state"
GENERATION_FILE = "generation.json"
GENERATIONS_DIR = "generations"
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
    # Digest of each postoffice's file (by name) and of site.yaml, when known:
    # a plan compares only the postoffices whose file changed.
    po_digests: Mapping[str, str] = field(default_factory=dict)
    site_digest: str = ""

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


def dump_postoffice(po: Any) -> dict[str, Any]:
    """One postoffice's snapshot (shared: never mutate it)."""
    return _dump(po)


def site_snapshot(config: SiteConfig) -> dict[str, Any]:
    dumped: dict[str, Any] = config.site.model_dump(mode="json", by_alias=True)
    return dumped


def snapshot(config: SiteConfig) -> Snapshot:
    """The applied models as plain JSON data (aliases as written in YAML)."""
    return {
        "format": SNAPSHOT_FORMAT,
        "site": site_snapshot(config),
        "postoffices": {name: _dump(po) for name, po in sorted(config.postoffices.items())},
    }


def state_dir(data_root: Path) -> Path:
    return data_root / STATE_DIR


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _read_json(path: Path) -> Any:
    try:
        raw = path.read_text("utf-8")
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc}") from exc
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise StateError(
            f"{path} is damaged ({exc}); move it away to plan against an empty state"
        ) from exc


def _read_pointer(data_root: Path) -> dict[str, Any] | None:
    path = state_dir(data_root) / GENERATION_FILE
    if not path.exists():
        return None
    data = _read_json(path)
    if not isinstance(data, dict):
        raise StateError(f"{path} is damaged; move it away to plan against an empty state")
    return data


def _fold(snap: Snapshot, digests: dict[str, str], delta: dict[str, Any]) -> str:
    """Apply one delta to a snapshot and the digests, in place; returns its site digest."""
    for key, value in delta.get("set", {}).items():
        snap[key] = value
    pos = snap.setdefault("postoffices", {})
    for name in delta.get("removed", []):
        pos.pop(name, None)
        digests.pop(name, None)
    pos.update(delta.get("postoffices", {}))
    digests.update(delta.get("po_digests", {}))
    return str(delta.get("site_digest", ""))


def read_generation(data_root: Path) -> Generation | None:
    """The last applied generation, or None when nothing was applied yet."""
    pointer = _read_pointer(data_root)
    if pointer is None:
        return None
    path = state_dir(data_root) / GENERATION_FILE
    try:
        if pointer.get("store") != STORE_FORMAT:  # format 1: the snapshot is inside
            return Generation(
                number=int(pointer["number"]),
                digest=str(pointer["digest"]),
                applied_at=str(pointer["applied_at"]),
                applied_by=str(pointer["applied_by"]),
                snapshot=dict(pointer["snapshot"]),
            )
        snap: Snapshot = {}
        digests: dict[str, str] = {}
        site_digest = ""
        folder = state_dir(data_root) / GENERATIONS_DIR
        for number in pointer["chain"]:
            part = _read_json(folder / f"{int(number):06d}.json")
            if part.get("checkpoint"):
                snap = dict(part["snapshot"])
                snap["postoffices"] = dict(snap.get("postoffices", {}))
                digests = dict(part.get("po_digests", {}))
                site_digest = str(part.get("site_digest", ""))
            else:
                site_digest = _fold(snap, digests, part) or site_digest
        return Generation(
            number=int(pointer["number"]),
            digest=str(pointer["digest"]),
            applied_at=str(pointer["applied_at"]),
            applied_by=str(pointer["applied_by"]),
            snapshot=snap,
            po_digests=digests,
            site_digest=site_digest,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(
            f"{path} is damaged ({exc}); move it away to plan against an empty state"
        ) from exc


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace `path` with `data`: tmp, fsync, rename, fsync the directory.

    durable=False skips both fsyncs (still all or nothing for readers): for
    a file that is only a hint, checked against a durable one when read.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def _delta(old: Generation, new: Generation) -> dict[str, Any]:
    """What changed from old to new: top-level snapshot keys, postoffices, digests.

    When both know their files' digests, only the postoffices whose digest
    differs are compared (a snapshot is a function of its file's text).
    """
    before, after = old.snapshot, new.snapshot
    changed_keys = {k: v for k, v in after.items() if k != "postoffices" and before.get(k) != v}
    old_pos: dict[str, Any] = before.get("postoffices", {})
    new_pos: dict[str, Any] = after.get("postoffices", {})
    names: list[str]
    if old.po_digests and new.po_digests.keys() == new_pos.keys():
        known = old.po_digests
        names = [n for n, d in new.po_digests.items() if known.get(n) != d]
    else:
        names = list(new_pos)
    pos = {}
    for name in names:
        value = new_pos[name]
        prev = old_pos.get(name)
        if prev is not value and prev != value:
            pos[name] = value
    digests = {name: d for name, d in new.po_digests.items() if old.po_digests.get(name) != d}
    return {
        "number": new.number,
        "base": old.number,
        "set": changed_keys,
        "postoffices": pos,
        "removed": sorted(set(old_pos) - set(new_pos)),
        "po_digests": digests,
        "site_digest": new.site_digest,
    }


def _dumps(data: Any) -> bytes:
    return (json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def write_generation(
    data_root: Path, generation: Generation, previous: Generation | None = None
) -> Path:
    """Write the generation (its own file first, then the pointer); return the pointer's path.

    With `previous` (the generation on disk now, with its snapshot), a delta
    against it is written when the chain is short and the delta small;
    otherwise, and always for a first generation, a checkpoint.
    """
    folder = state_dir(data_root)
    pointer = _read_pointer(data_root) if previous is not None else None
    chain: list[int] = []
    delta: dict[str, Any] | None = None
    if (
        previous is not None
        and pointer is not None
        and pointer.get("store") == STORE_FORMAT
        and int(pointer.get("number", -1)) == previous.number
        and len(pointer.get("chain", [])) < CHECKPOINT_EVERY
    ):
        delta = _delta(previous, generation)
        size = len(delta["postoffices"]) + len(delta["removed"])
        if size > max(8, CHECKPOINT_SHARE * len(generation.snapshot.get("postoffices", {}))):
            delta = None
        else:
            chain = [int(n) for n in pointer["chain"]]
    if delta is not None:
        body = _dumps(delta)
        chain.append(generation.number)
    else:
        body = _dumps(
            {
                "number": generation.number,
                "checkpoint": True,
                "snapshot": generation.snapshot,
                "po_digests": dict(generation.po_digests),
                "site_digest": generation.site_digest,
            }
        )
        chain = [generation.number]
    # Its own file is durable before the pointer names it (two fsyncs each);
    # the head is a hint, checked against the pointer's time when read.
    atomic_write(folder / GENERATIONS_DIR / f"{generation.number:06d}.json", body)
    head = {k: v for k, v in generation.to_json().items() if k != "snapshot"}
    target = folder / GENERATION_FILE
    atomic_write(target, _dumps({**head, "store": STORE_FORMAT, "chain": chain}))
    atomic_write(
        folder / HEAD_FILE,
        (json.dumps(head, sort_keys=True) + "\n").encode("utf-8"),
        durable=False,
    )
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
        pointer = _read_pointer(data_root)
        if pointer is None:
            return None
        try:
            return Generation(
                int(pointer["number"]),
                str(pointer["digest"]),
                str(pointer["applied_at"]),
                str(pointer["applied_by"]),
                {},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{folder / GENERATION_FILE} is damaged ({exc})") from exc
    return head
