"""A first text plan names every object without dumping it, in the same order."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mailplat.config.models.postoffice import Postoffice
from mailplat.reconcile.diff import diff
from tests.unit.test_expand_props import postoffice_data, site_config


@settings(max_examples=60, deadline=None)
@given(
    pos=st.dictionaries(
        st.sampled_from(["a", "b", "po-1", "po.2", "z"]), postoffice_data(), max_size=4
    )
)
def test_names_only_plan_lists_what_the_full_plan_lists(pos: dict[str, dict[str, Any]]) -> None:
    config = site_config({n: Postoffice.model_validate(d) for n, d in pos.items()})
    full = diff(None, config)
    names = diff(None, config, values=False)
    assert [(c.action, c.kind, c.name) for c in names.changes] == [
        (c.action, c.kind, c.name) for c in full.changes
    ]
    assert names.new_snapshot is None and full.new_snapshot is not None
