"""Shared test helpers: build a site on disk, run a real server in-process.

Sites are written as YAML files (the same path an admin uses) and loaded by
the real loader; servers bind 127.0.0.1 port 0, so tests never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML

from mailplat.auth.passwords import hash_password
from mailplat.config.load import load_site
from mailplat.runtime.tls import make_self_signed

if TYPE_CHECKING:
    from mailplat.runtime.server import Server

_yaml = YAML(typ="safe", pure=True)
_yaml.default_flow_style = False

# Hashing is slow by design; hash each test password once per run.
_HASHES: dict[str, str] = {}


def pw(password: str) -> str:
    if password not in _HASHES:
        _HASHES[password] = hash_password(password)
    return _HASHES[password]


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: Path) -> Any:
    """A YAML file as plain data (to change one key and dump it again)."""
    with path.open() as fh:
        return _yaml.load(fh)


def dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        _yaml.dump(data, fh)


def base_site(tls_dir: Path | None) -> dict[str, Any]:
    tls = {"cert": str(tls_dir / "cert.pem"), "key": str(tls_dir / "key.pem")} if tls_dir else None
    listener = lambda enabled=True: {  # noqa: E731
        "enabled": enabled,
        "bind": ["127.0.0.1:0"],
        **({"tls": tls} if tls else {}),
    }
    return {
        "server": {
            "local_domain": "example.test",
            "host_name": "mx.example.test",
            "default_postoffice": "example",
            # Hermetic: no test resolves through the machine's resolver. Nothing
            # answers on port 9, so remote mail meets a DNS timeout (temporary)
            # and stays queued; outbound tests point this at their own server.
            "dns_servers": ["127.0.0.1:9"],
        },
        "listeners": {
            "smtp": {**listener(), "auth_requires_tls": False},
            "submission": listener(bool(tls)),
            "smtps": listener(bool(tls)),
            "pop3": {**listener(), "auth_requires_tls": False},
            "pop3s": listener(bool(tls)),
        },
        "delivery": {"queue_poll_seconds": 1},
        "logging": {"json": False},
    }


def base_postoffice() -> dict[str, Any]:
    return {
        "domains": {
            "example.test": {"abuse": "postmaster"},
            "example.org": {},
        },
        "mailboxes": {
            "postmaster": {"password": pw("pm-secret")},
            "alice": {"password": pw("alice-secret"), "addresses": ["alice.smith@example.test"]},
            "bob": {"password": pw("bob-secret")},
        },
        "groups": {
            "sales": {
                "address": "sales@example.test",
                "members": ["alice@example.test", "bob@example.test"],
            }
        },
    }


def write_site(
    root: Path,
    *,
    site: dict[str, Any] | None = None,
    postoffices: dict[str, dict[str, Any]] | None = None,
    tls: bool = True,
) -> Path:
    """Write a site folder under root and return its path."""
    site_dir = root / "site"
    tls_dir = None
    if tls:
        tls_dir = root / "tls"
        if not (tls_dir / "cert.pem").exists():
            make_self_signed(tls_dir, "mx.example.test")
    dump(site_dir / "site.yaml", deep_merge(base_site(tls_dir), site or {}))
    pos = postoffices if postoffices is not None else {"example": base_postoffice()}
    for name, data in pos.items():
        dump(site_dir / "postoffices" / f"{name}.yaml", data)
    return site_dir


@contextlib.asynccontextmanager
async def running(site_dir: Path, data_root: Path) -> AsyncIterator[Server]:
    """A started Server for the site; stopped on exit."""
    from mailplat.runtime.server import Server  # noqa: PLC0415 - heavy import

    server = Server(load_site(site_dir), data_root)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=1.0)


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll a cheap predicate (delivery happens in the background); fail on timeout."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


def maildir_files(data_root: Path, po: str, mailbox: str) -> list[Path]:
    base = data_root / "postoffices" / po / mailbox
    return sorted([*(base / "new").glob("*"), *(base / "cur").glob("*")])
