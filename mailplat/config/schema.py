"""JSON Schema and the markdown config reference, generated from the models, PURE.

Input: the pydantic models of site.yaml, postoffices/*.yaml and expect.yaml.
Output: JSON Schema documents (editors use them through the
`# yaml-language-server: $schema=` line at the top of every file) and a
markdown reference of every key with its type, default and description (the
README section between the config-reference markers). The models are the one
source: `mailplat schema` writes both, `mailplat schema --check` and a test
fail when either is stale. No I/O here; the CLI writes the files.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mailplat.config.models.expect import Expectations
from mailplat.config.models.postoffice import Postoffice
from mailplat.config.models.site import Site

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REF_START = "<!-- config-reference:start -->"
REF_END = "<!-- config-reference:end -->"

# file name in schemas/ -> (root model, the YAML file it describes)
SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "site.schema.json": (Site, "sites/<site>/site.yaml"),
    "postoffice.schema.json": (Postoffice, "sites/<site>/postoffices/<name>.yaml"),
    "expect.schema.json": (Expectations, "sites/<site>/expect.yaml"),
}

# Validators of the constrained string types in models/base.py, by function name.
_VALIDATOR_NAMES = {
    "_host_port": "host[:port]",
    "_ip_pattern": "IP pattern",
    "_domain": "domain",
    "_email": "address",
    "_name": "name",
}


def json_schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    """The JSON Schema of a root model (validation mode, keys as written in YAML)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": title}


def schema_texts() -> dict[str, str]:
    """File name -> JSON text for every schema in schemas/."""
    return {
        name: json.dumps(json_schema(model, f"mailplat {what}"), indent=2, ensure_ascii=False)
        + "\n"
        for name, (model, what) in SCHEMAS.items()
    }


# -- markdown reference -------------------------------------------------------


def _validator_name(meta: list[Any]) -> str | None:
    for item in meta:
        func = getattr(item, "func", None)
        name = getattr(func, "__name__", "")
        if name in _VALIDATOR_NAMES:
            return _VALIDATOR_NAMES[name]
    return None


def type_text(tp: Any) -> str:
    """A short human name of an annotation: `list[address]`, `"off" | "first"`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        named = _validator_name(list(tp.__metadata__))
        return named or type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)]
        return " | ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is list:
        return f"list[{type_text(args[0])}]"
    if origin is dict:
        return f"map[{type_text(args[0])} → {type_text(args[1])}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    if isinstance(tp, type):
        return {"str": "string", "int": "integer", "bool": "boolean", "float": "number"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp)


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """Models nested in an annotation, in order."""
    out: list[type[BaseModel]] = []
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    for arg in typing.get_args(tp):
        for m in _models_in(arg):
            if m not in out:
                out.append(m)
    return out


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    factory = info.default_factory
    value = factory() if factory is not None else info.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        dumped = value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return f"`{json.dumps(dumped)}`" if dumped else "(all defaults)"
    if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        items = [v.model_dump(mode="json", by_alias=True, exclude_defaults=True) for v in value]
        return f"`{json.dumps(items)}`"
    if value is None:
        return "none"
    if value == [] or value == {}:
        return "empty"
    return f"`{json.dumps(value)}`"


def _constraints(info: FieldInfo) -> str:
    """` ≥ 1`, ` 1..65535`, ` (at least 1)`: limits pydantic enforces, for the reader."""
    low = high = min_len = None
    for item in info.metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
        min_len = getattr(item, "min_length", min_len)
    if low is not None and high is not None:
        return f" {low}..{high}"
    if low is not None:
        return f" ≥ {low}"
    if min_len:
        return f" (at least {min_len})"
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _doc(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""


def _table(model: type[BaseModel]) -> list[str]:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        key = info.alias or name
        nested = _models_in(info.annotation)
        desc = info.description or (_doc(nested[0]) if nested else "")
        lines.append(
            f"| `{key}` | {_cell(type_text(info.annotation) + _constraints(info))} | {_cell(_default_text(info))} "
            f"| {_cell(desc)} |"
        )
    return lines


def reference_markdown() -> str:
    """The whole config reference: one section per file, one table per model."""
    out: list[str] = []
    seen: set[type[BaseModel]] = set()
    for _, (root, what) in SCHEMAS.items():
        out += [f"### `{what}`", "", _doc(root), ""]
        out += _table(root)
        out.append("")
        queue = [m for info in root.model_fields.values() for m in _models_in(info.annotation)]
        while queue:
            model = queue.pop(0)
            if model in seen:
                continue
            seen.add(model)
            out += [f"#### {model.__name__}", "", _doc(model), ""]
            out += _table(model)
            out.append("")
            queue += [
                m for info in model.model_fields.values() for m in _models_in(info.annotation)
            ]
    return "\n".join(out).rstrip() + "\n"


def replace_reference(readme: str, markdown: str) -> str:
    """README text with the section between the config-reference markers replaced."""
    start = readme.find(REF_START)
    end = readme.find(REF_END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {REF_START} ... {REF_END} section")
    head = readme[: start + len(REF_START)]
    return f"{head}\n\n{markdown}\n{readme[end:]}"
