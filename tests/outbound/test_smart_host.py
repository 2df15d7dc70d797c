"""Smart hosts: every remote message through one relay with AUTH (PLAIN, LOGIN) after
STARTTLS; a domain's own smart host and the priority switch; a smart host that is
ourselves is refused when the config is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailplat.config.load import load_site
from mailplat.core.errors import ConfigError
from mailplat.runtime.tls import make_self_signed, server_context
from tests.outbound.conftest import Harness
from tests.support import base_postoffice, write_site
from tests.support_smtp import Script

USERS = {"relayuser": "s3cret pass"}


def relay_script(tmp_path: Path) -> Script:
    cert, key = make_self_signed(tmp_path / "relay-tls", "relay.test")
    return Script(users=USERS, tls=server_context(cert, key))


def smart(h: Harness, **auth: Any) -> dict[str, Any]:
    host: dict[str, Any] = {"host": f"127.0.0.5:{h.port}"}
    if auth:
        host["auth"] = {"username": "relayuser", **auth}
    return {"delivery": {"smart_host": host}}


async def test_smart_host_takes_everything_with_auth_plain(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILPLAT_TEST_RELAY_PW", USERS["relayuser"])
    harness.configure(smart(harness, password_env="MAILPLAT_TEST_RELAY_PW"))
    relay = await harness.receiver("127.0.0.5", relay_script(tmp_path))
    await harness.queue(["a@far.test", "b@elsewhere.test"])
    await harness.outbound.drain()
    [got] = relay.got  # one destination, one transaction for both
    assert got.rcpts == ["a@far.test", "b@elsewhere.test"]
    assert got.login == "relayuser" and got.tls is True
    assert harness.zone.queries == []  # no MX lookups through a smart host
    assert harness.queued() == []


async def test_smart_host_auth_login_with_password_file(harness: Harness, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "site" / "relay.secret").write_text(USERS["relayuser"] + "\n")
    harness.configure(smart(harness, password_file="relay.secret", mechanism="LOGIN"))
    relay = await harness.receiver("127.0.0.5", relay_script(tmp_path))
    await harness.queue(["a@far.test"])
    await harness.outbound.drain()
    assert [g.login for g in relay.got] == ["relayuser"]


async def test_refused_login_keeps_the_mail(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILPLAT_TEST_RELAY_PW", "wrong")
    harness.configure(smart(harness, password_env="MAILPLAT_TEST_RELAY_PW"))
    relay = await harness.receiver("127.0.0.5", relay_script(tmp_path))
    rid = await harness.queue(["a@far.test"])
    await harness.outbound.drain()
    assert relay.got == []
    env = harness.record(rid)
    assert env.attempts == 1 and "AUTH failed: 535" in env.get("last-error")
    assert harness.notices() == []  # a config problem is not the sender's fault


async def test_missing_password_defers(harness: Harness) -> None:
    harness.configure(smart(harness, password_env="MAILPLAT_TEST_NOT_SET_ANYWHERE"))
    rid = await harness.queue(["a@far.test"])
    await harness.outbound.drain()
    assert "MAILPLAT_TEST_NOT_SET_ANYWHERE is not set" in harness.record(rid).get("last-error")


def with_backup_domain(port: int) -> dict[str, Any]:
    po = base_postoffice()
    po["domains"]["backup.test"] = {"smart_host": f"127.0.0.3:{port}"}
    return po


@pytest.mark.parametrize(("priority", "winner"), [(True, "127.0.0.3"), (False, "127.0.0.5")])
async def test_domain_smart_host_priority(harness: Harness, priority: bool, winner: str) -> None:
    site = smart(harness)
    site["delivery"]["domain_smart_host_priority"] = priority
    harness.configure(site, example=with_backup_domain(harness.port))
    own = await harness.receiver("127.0.0.3")
    glob = await harness.receiver("127.0.0.5")
    await harness.queue(["x@backup.test", "y@far.test"])
    await harness.outbound.drain()
    got = {rx.host: sorted(r for g in rx.got for r in g.rcpts) for rx in (own, glob)}
    if priority:
        assert got == {"127.0.0.3": ["x@backup.test"], "127.0.0.5": ["y@far.test"]}
    else:
        assert got == {"127.0.0.3": [], "127.0.0.5": ["x@backup.test", "y@far.test"]}


async def test_domain_smart_host_without_global_one(harness: Harness) -> None:
    harness.configure(example=with_backup_domain(harness.port))
    own = await harness.receiver("127.0.0.3")
    await harness.queue(["x@backup.test"])
    await harness.outbound.drain()
    assert [g.rcpts for g in own.got] == [["x@backup.test"]]
    assert harness.zone.queries == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:2525", "localhost:2525", "mx.example.test:2525"],
)
def test_smart_host_pointing_at_ourselves_is_refused(tmp_path: Path, host: str) -> None:
    site = write_site(
        tmp_path,
        site={
            "listeners": {"smtp": {"bind": ["127.0.0.1:2525"]}},
            "delivery": {"smart_host": {"host": host}},
        },
        tls=False,
    )
    with pytest.raises(ConfigError) as info:
        load_site(site)
    [diag] = [d for d in info.value.diagnostics if "own listener" in str(d)]
    text = str(diag)
    assert "site.yaml:" in text and "loop back" in text and "hint:" in text
    assert diag.location.line > 0


def test_domain_smart_host_pointing_at_ourselves_is_refused(tmp_path: Path) -> None:
    po = base_postoffice()
    po["domains"]["backup.test"] = {"smart_host": "0.0.0.0:2526"}
    site = write_site(
        tmp_path,
        site={"listeners": {"smtp": {"bind": ["0.0.0.0:2526"]}}},
        postoffices={"example": po},
        tls=False,
    )
    with pytest.raises(ConfigError) as info:
        load_site(site)
    assert any("domain backup.test" in str(d) for d in info.value.diagnostics)


def test_smart_host_elsewhere_is_fine(tmp_path: Path) -> None:
    site = write_site(
        tmp_path,
        site={
            "listeners": {"smtp": {"bind": ["127.0.0.1:2525"]}},
            "delivery": {"smart_host": {"host": "127.0.0.1:2526"}},
        },
        tls=False,
    )
    load_site(site)
