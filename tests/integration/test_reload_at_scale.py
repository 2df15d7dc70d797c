"""A change to a big running site: parsed, checked and written in proportion to the change.

A server runs a site of 1,500 postoffices; changes arrive through the
control socket (the path of `mailplat apply` and of git push) and are
proven at RCPT over SMTP. A one-line change is applied incrementally (one
file parsed, the Directory derived, a small delta generation written), and
the checks of a change still see the postoffices it affects: removing a
mailbox another postoffice's group names is refused with that other file's
error, and a domain claimed twice is refused too; the old config keeps
serving after each refusal.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
from pathlib import Path
from typing import Any

from mailplat.config.load import LoadCache, load_site
from mailplat.control import channel
from mailplat.reconcile.state import GENERATIONS_DIR, read_generation, state_dir
from mailplat.runtime.server import Server
from tests.support import base_site, dump

POSTOFFICES = 1500


def postoffice(i: int, group: str = "team", drop_m1: bool = False) -> dict[str, Any]:
    domain = f"po{i:05d}.test"
    mailboxes: dict[str, Any] = {"postmaster": {}, "m0": {}, "m1": {}}
    if drop_m1:
        del mailboxes["m1"]
    # Each group also reaches the next postoffice's m1: a reference across files.
    nxt = f"po{(i + 1) % POSTOFFICES:05d}.test"
    return {
        "domains": {domain: {}},
        "mailboxes": mailboxes,
        "groups": {
            "team": {"address": f"{group}@{domain}", "members": [f"m0@{domain}", f"m1@{nxt}"]}
        },
    }


def write_big_site(root: Path) -> Path:
    site = root / "site"
    data = base_site(None)
    data["server"]["default_postoffice"] = "po00000"
    data["listeners"] = {
        "smtp": {"bind": ["127.0.0.1:0"], "auth_requires_tls": False},
        "submission": {"enabled": False},
        "smtps": {"enabled": False},
        "pop3": {"enabled": False},
        "pop3s": {"enabled": False},
    }
    dump(site / "site.yaml", data)
    for i in range(POSTOFFICES):
        dump(site / "postoffices" / f"po{i:05d}.yaml", postoffice(i))
    return site


def rcpt(port: int, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("scale.test")
        s.mail("someone@remote.test")
        return s.rcpt(address)[0]


async def apply(data: Path, site: Path) -> dict[str, Any]:
    request = {"cmd": "apply", "site": str(site), "by": "test"}
    return await asyncio.to_thread(channel.call, channel.socket_path(data), request)


async def test_one_line_change_is_applied_incrementally(tmp_path: Path) -> None:
    site = write_big_site(tmp_path)
    data = tmp_path / "data"
    cache = LoadCache()
    server = Server(load_site(site, cache), data, load_cache=cache)
    await server.start()
    try:
        port = server.port("smtp")
        first = await apply(data, site)  # nothing applied yet: provisions every Maildir
        assert first["ok"], first
        assert await asyncio.to_thread(rcpt, port, "team@po00007.test") == 250

        dump(site / "postoffices" / "po00007.yaml", postoffice(7, group="crew"))
        reply = await apply(data, site)
        assert reply["ok"], reply
        assert reply["files_parsed"] == 1 and reply["incremental"] is True
        assert reply["changes"] == ["~ group po00007/team"]
        assert await asyncio.to_thread(rcpt, port, "crew@po00007.test") == 250
        assert await asyncio.to_thread(rcpt, port, "team@po00007.test") == 550
        # The generation on disk is a delta holding the one postoffice.
        number = reply["generation"]
        delta = json.loads((state_dir(data) / GENERATIONS_DIR / f"{number:06d}.json").read_text())
        assert delta.get("base") == number - 1 and list(delta["postoffices"]) == ["po00007"]
        applied = read_generation(data)
        assert applied is not None
        assert applied.snapshot["postoffices"]["po00007"]["groups"]["team"]["address"] == (
            "crew@po00007.test"
        )

        # po00009 drops m1, which po00008's group names: only po00009 changed,
        # the error is in po00008's file, and nothing goes live.
        dump(site / "postoffices" / "po00009.yaml", postoffice(9, drop_m1=True))
        refused = await apply(data, site)
        assert not refused["ok"]
        assert any(
            "po00008.yaml" in line and "m1@po00009.test" in line for line in refused["errors"]
        ), refused["errors"]
        assert await asyncio.to_thread(rcpt, port, "m1@po00009.test") == 250

        # Undo that; then po00011 claims po00012's domain: refused as well.
        dump(site / "postoffices" / "po00009.yaml", postoffice(9))
        clash = postoffice(11)
        clash["domains"]["po00012.test"] = {}
        dump(site / "postoffices" / "po00011.yaml", clash)
        refused = await apply(data, site)
        assert not refused["ok"]
        assert any("po00012.test already belongs" in line for line in refused["errors"]), refused
        dump(site / "postoffices" / "po00011.yaml", postoffice(11))
        again = await apply(data, site)
        assert again["ok"] and again["incremental"] is True, again
        assert await asyncio.to_thread(rcpt, port, "crew@po00007.test") == 250
    finally:
        await server.stop(grace=1.0)
