"""The JSON log formatter: event and fields from the call site's template.

Records are made the way logging makes them and formatted by the real
formatter; a scan of mailplat/ checks that every keyed template in the code
base gives an event and its fields.
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from mailplat.runtime.logging import JsonFormatter, parse_template

ROOT = Path(__file__).resolve().parents[2] / "mailplat"


def fmt(template: str, *args: Any, exc: bool = False) -> dict[str, Any]:
    record = logging.LogRecord("mailplat.t", logging.INFO, __file__, 1, template, args, None)
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            record.exc_info = sys.exc_info()
    out = json.loads(JsonFormatter().format(record))
    assert isinstance(out, dict)
    for key in ("ts", "level", "logger"):
        out.pop(key)
    return out


@pytest.mark.parametrize(
    ("template", "args", "expected"),
    [
        (
            "smtp accepted id=%s peer=%s rcpts=%d size=%d",
            ("ID", "127.0.0.1", 2, 300),
            {"event": "smtp accepted", "id": "ID", "peer": "127.0.0.1", "rcpts": 2, "size": 300},
        ),
        (
            "outbound %s id=%s reply=%s",
            ("deferred", "ID", "451 later"),
            {"event": "outbound deferred", "id": "ID", "reply": "451 later"},
        ),
        (
            "outbound retry id=%s attempts=%d next_in=%.0fs",
            ("ID", 3, 899.6),
            {"event": "outbound retry", "id": "ID", "attempts": 3, "next_in": "900s"},
        ),
        (
            "reload applied by=%s ms=%.1f",
            ("me", 4.56),
            {"event": "reload applied", "by": "me", "ms": 4.6},
        ),
        (
            "outbound tls-failed host=%s; retrying without TLS",
            ("h",),
            {"event": "outbound tls-failed", "host": "h", "msg": "retrying without TLS"},
        ),
        (
            "delivery possible-duplicate id=%s (queued before a crash)",
            ("ID",),
            {"event": "delivery possible-duplicate", "id": "ID", "msg": "(queued before a crash)"},
        ),
        ("spool opened %s", ("incoming=0",), {"event": "spool opened", "msg": "incoming=0"}),
        (
            "smtp internal-error: %s",
            (ValueError("x"),),
            {"event": "smtp internal-error", "msg": "x"},
        ),
        (
            "smtp loop peer=%s hops>%d",
            ("p", 50),
            {"event": "smtp loop", "peer": "p", "msg": "hops>50"},
        ),
        ("pop3 in-use user=%r", ("bob",), {"event": "pop3 in-use", "user": "'bob'"}),
        ("stopped", (), {"event": "stopped"}),
        ("done 100%% msg=%s", ("x",), {"event": "done", "msg_": "x", "msg": "100%"}),
        ("weird peer=%s", (Path("/p"),), {"event": "weird", "peer": "/p"}),
    ],
)
def test_fields_come_from_the_template(
    template: str, args: tuple[Any, ...], expected: dict[str, Any]
) -> None:
    assert fmt(template, *args) == expected


def test_records_that_do_not_fit_keep_the_whole_message() -> None:
    assert fmt("pad n=%*d", 3, 5) == {"msg": "pad n=  5"}
    record = logging.LogRecord("m", logging.INFO, "f", 1, "map %(a)s", ({"a": 1},), None)
    assert json.loads(JsonFormatter().format(record))["msg"] == "map 1"
    not_a_template = logging.LogRecord("m", logging.INFO, "f", 1, ValueError("v"), (), None)
    assert json.loads(JsonFormatter().format(not_a_template))["msg"] == "v"
    assert "Traceback" in fmt("failed id=%s", "I", exc=True)["exc"]


def _templates() -> list[str]:
    """Every literal first argument of a log.<level>(...) call in mailplat/."""
    found = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("debug", "info", "warning", "error", "exception")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append(node.args[0].value)
    return found


def test_every_keyed_template_in_the_code_base_has_an_event_and_its_fields() -> None:
    templates = _templates()
    assert len(templates) > 50
    for template in templates:
        parsed = parse_template(template)
        assert parsed is not None, template
        assert parsed.event, template
        keys = [t.split("=", 1)[0] for t in template.split() if "=%" in t]
        assert [f.key.rstrip("_") for f in parsed.fields] == keys, template
