"""The plan diff and its effects, pure: changes, routing diff, kept mail, warnings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings

from mailplat.config.directory import Directory
from mailplat.config.models.postoffice import Postoffice
from mailplat.config.models.site import Site
from mailplat.reconcile.diff import diff, diff_snapshots, routing_diff
from mailplat.reconcile.effects import Observed, effects
from mailplat.reconcile.state import Generation, read_generation, snapshot, write_generation
from tests.unit.test_expand_props import postoffice_data, site_config


def po(data: dict[str, Any]) -> Postoffice:
    return Postoffice.model_validate(data)


BASE = {
    "domains": {"x.test": {"catchall": "pm"}},
    "mailboxes": {"pm": {}, "alice": {"quota_mb": 5}, "bob": {}},
    "groups": {"team": {"address": "team@x.test", "members": ["alice@x.test"]}},
}


@settings(max_examples=60, deadline=None)
@given(data=postoffice_data())
def test_identical_configs_give_an_empty_plan(data: dict[str, Any]) -> None:
    config = site_config({"po": po(data)})
    plan = diff(snapshot(config), config, old_digest="x")
    assert plan.empty and plan.routing == ()
    # And through a JSON round trip of the snapshot, as read back from disk.
    import json

    again = diff(json.loads(json.dumps(snapshot(config))), config)
    assert again.empty


def test_first_plan_adds_everything_without_routing_diff() -> None:
    config = site_config({"po": po(BASE)})
    plan = diff(None, config)
    assert plan.first and plan.routing == ()
    kinds = [(c.action, c.kind, c.name) for c in plan.changes]
    assert ("+", "mailbox", "po/alice") in kinds and ("+", "site-section", "relay") in kinds
    assert kinds.index(("+", "site-section", "server")) == 0  # site.yaml order first


def test_change_add_remove_and_routing() -> None:
    old = site_config({"po": po(BASE)})
    new_data = {
        **BASE,
        "mailboxes": {"pm": {}, "alice": {"quota_mb": 9}, "carol": {}},
        "groups": {"team": {"address": "team@x.test", "members": ["alice@x.test", "carol@x.test"]}},
    }
    new = site_config({"po": po(new_data)})
    plan = diff(snapshot(old), new, old_digest="x")
    got = {(c.action, c.kind, c.name) for c in plan.changes}
    assert got == {
        ("~", "mailbox", "po/alice"),
        ("+", "mailbox", "po/carol"),
        ("-", "mailbox", "po/bob"),
        ("~", "group", "po/team"),
    }
    alice = next(c for c in plan.changes if c.name == "po/alice")
    assert [(f.path, f.before, f.after) for f in alice.fields] == [("quota_mb", 5, 9)]
    routes = {r.address: (r.before, r.after) for r in plan.routing}
    assert routes["bob@x.test"] == (("mailbox:po/bob",), ("mailbox:po/pm",))
    assert routes["carol@x.test"] == (("mailbox:po/pm",), ("mailbox:po/carol",))
    assert routes["team@x.test"][1] == ("mailbox:po/alice", "mailbox:po/carol")
    assert plan.count("+") == 1 and plan.count("~") == 2 and plan.count("-") == 1


def test_catchall_change_shows_on_the_any_address_probe() -> None:
    old = site_config({"po": po(BASE)})
    new = site_config({"po": po({**BASE, "domains": {"x.test": {}}})})
    routes = {r.address: r for r in routing_diff(Directory(old), Directory(new))}
    assert routes["*@x.test"].before == ("mailbox:po/pm",)
    assert routes["*@x.test"].after == ("reject",)


def test_effects_maildirs_kept_mail_rebind_and_warnings(tmp_path: Path) -> None:
    old = site_config({"po": po(BASE)})
    site = Site.model_validate(
        {
            "relay": {"allow_local_senders": True, "privileged_ips": ["0.0.0.0/0"]},
            "listeners": {"pop3": {"bind": ["127.0.0.1:2110"]}},
        }
    )
    new_data = {**BASE, "mailboxes": {"pm": {}, "alice": {}}, "welcome": {"body": "hi"}}
    new = site_config({"po": po(new_data)}, site)
    plan = diff(snapshot(old), new, old_digest="x")
    observed = Observed(tmp_path, frozenset({"po/pm", "po/bob"}), {"po/bob": 3})
    fx = effects(plan, new, observed)
    assert [m.mailbox for m in fx.maildirs] == ["po/alice"]
    assert fx.maildirs[0].path == tmp_path / "postoffices" / "po" / "alice"
    assert fx.maildirs[0].welcome
    assert [(k.mailbox, k.messages, k.exists) for k in fx.kept] == [("po/bob", 3, True)]
    assert fx.rebind == ("pop3",)
    assert any("forges a local From" in w for w in fx.warnings)
    assert any("OPEN RELAY" in w for w in fx.warnings)


def test_moved_domain_is_not_reported_as_lost() -> None:
    a = {"domains": {"x.test": {}, "y.test": {}}, "mailboxes": {"pm": {}}}
    b = {"domains": {"z.test": {}}, "mailboxes": {"pm": {}}}
    old = site_config({"a": po(a), "b": po(b)})
    new = site_config(
        {
            "a": po({**a, "domains": {"x.test": {}}}),
            "b": po({**b, "domains": {"z.test": {}, "y.test": {}}}),
        }
    )
    plan = diff(snapshot(old), new, old_digest="x")
    fx = effects(plan, new, Observed(Path("/d")))
    assert {(c.action, c.name) for c in plan.changes} == {("-", "a/y.test"), ("+", "b/y.test")}
    assert not any("y.test" in w for w in fx.warnings)


def test_diff_snapshots_only_reports_real_differences() -> None:
    config = site_config({"po": po(BASE)})
    snap = snapshot(config)
    assert diff_snapshots(snap, snap) == ()


def test_generation_write_is_atomic_and_readable(tmp_path: Path) -> None:
    assert read_generation(tmp_path) is None
    config = site_config({"po": po(BASE)})
    gen = Generation(1, "abc", "2024-01-01T00:00:00+00:00", "me@here", snapshot(config))
    write_generation(tmp_path, gen)
    assert read_generation(tmp_path) == gen
    assert (tmp_path / "state" / "generations" / "000001.json").exists()
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]
