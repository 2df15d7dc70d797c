"""Property tests for expansion: never loops, every destination is a known kind.

Configs here are built straight from the models without cross-object
validation, so they may hold the loops and dangling targets validation
refuses: expand() must still terminate and give sane answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mailplat.config.directory import Directory
from mailplat.config.expand import expand
from mailplat.config.load import SiteConfig
from mailplat.config.models.postoffice import Postoffice
from mailplat.config.models.site import Site
from mailplat.core.address import parse_address

NAMES = ["a", "b", "c", "d", "e", "f"]
DOMAINS = ["x.test", "y.test"]
ADDRS = [f"{n}@{d}" for n in NAMES for d in DOMAINS] + ["far@remote.test", "g1@x.test"]


def site_config(postoffices: dict[str, Postoffice], site: Site | None = None) -> SiteConfig:
    return SiteConfig(
        root=Path("/nonexistent/site"),
        name="site",
        site=site or Site(),
        postoffices=postoffices,
        files={name: f"site/postoffices/{name}.yaml" for name in postoffices},
        site_file="site/site.yaml",
        expect=None,
        digest="x",
    )


@st.composite
def postoffice_data(draw: Any) -> dict[str, Any]:
    mailboxes: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(NAMES[:4]), unique=True, max_size=4)):
        mb: dict[str, Any] = {}
        if draw(st.booleans()):
            mb["redirect"] = {
                "to": draw(st.lists(st.sampled_from(ADDRS), min_size=1, max_size=3)),
                "keep_copy": draw(st.booleans()),
            }
        if draw(st.booleans()):
            mb["disabled"] = True
        mailboxes[name] = mb
    groups = {
        f"g{i}": {
            "address": f"{g}@x.test",
            "members": draw(st.lists(st.sampled_from(ADDRS), max_size=4)),
        }
        for i, g in enumerate(draw(st.lists(st.sampled_from(["e", "f", "g1"]), unique=True)))
    }
    domains = {
        d: {
            "catchall": draw(st.sampled_from([None, "a", "e@x.test", "far@remote.test"])),
            "disabled": draw(st.booleans()) and draw(st.booleans()),
        }
        for d in DOMAINS
    }
    return {
        "domains": domains,
        "mailboxes": mailboxes,
        "groups": groups,
        "auto_address": draw(st.booleans()),
    }


@settings(max_examples=150, deadline=None)
@given(data=postoffice_data(), rcpt=st.sampled_from([*ADDRS, "zz@x.test", "a@[127.0.0.1]"]))
def test_expand_terminates_with_known_destinations(data: dict[str, Any], rcpt: str) -> None:
    directory = Directory(site_config({"po": Postoffice.model_validate(data)}))
    result = expand(directory, parse_address(rcpt))
    assert result.destinations, "every recipient lands somewhere, even if on reject"
    labels = [d.label if d.kind != "reject" else f"reject:{d.target}" for d in result.destinations]
    assert len(labels) == len(set(labels)), "no destination twice"
    for d in result.destinations:
        assert d.kind in ("mailbox", "list", "remote", "reject")
        if d.kind == "mailbox":
            assert d.target in directory.mailboxes
        assert d.rcpt == parse_address(rcpt).key
    assert len(result.trace) < 500


def test_loop_is_cut_and_explained() -> None:
    po = Postoffice.model_validate(
        {
            "domains": {"x.test": {}},
            "groups": {
                "a": {"address": "a@x.test", "members": ["b@x.test"]},
                "b": {"address": "b@x.test", "members": ["a@x.test"]},
            },
        }
    )
    result = expand(Directory(site_config({"po": po})), parse_address("a@x.test"))
    assert any("loop" in line for line in result.trace)
