"""Read a YAML file into plain Python data, fast, with positions on demand.

The round-trip loader keeps every line and column but costs ~25 s for a site
of 100k mailboxes. This reader drives ruamel.yaml's C parser (libyaml via
ruamel.yaml.clib; the pure parser when the C one is missing) and builds dicts
and lists itself: about ten times faster. Plain block YAML skips even that:
fastyaml reads it line by line, five times faster again. Positions are recorded only when
asked (`with_marks=True`), which the loader does for a file that has errors.

Scalars resolve as YAML 1.2's core schema: null, booleans, ints, floats,
everything else a string; quoted scalars are always strings. Duplicate keys
are reported, not silently overwritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from mailplat.config.fastyaml import NOT_SIMPLE, parse_simple, resolve_plain

try:
    from _ruamel_yaml import CParser  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the wheel installed
    CParser = None

PathT = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class YamlProblem:
    """A syntax error or duplicate key, with a 1-based position."""

    message: str
    line: int
    col: int
    path: PathT = ()
    hint: str = ""


@dataclass
class YamlDoc:
    """What reading one file gave: data (None if unreadable), problems, optional marks."""

    data: Any
    problems: list[YamlProblem] = field(default_factory=list)
    # path -> (key line, key col, value line, value col), 1-based; only with_marks.
    marks: dict[PathT, tuple[int, int, int, int]] = field(default_factory=dict)


def _events(text: str) -> Iterator[Any]:
    if CParser is not None:
        parser = CParser(text)
        while True:
            event = parser.get_event()
            yield event
            if type(event).__name__ == "StreamEndEvent":
                return
    else:  # pragma: no cover
        yield from YAML(typ="safe", pure=True).parse(text)


class _Builder:
    def __init__(self, events: Iterator[Any], with_marks: bool) -> None:
        self.events = events
        self.with_marks = with_marks
        self.anchors: dict[str, Any] = {}
        self.problems: list[YamlProblem] = []
        self.marks: dict[PathT, tuple[int, int, int, int]] = {}

    def document(self) -> Any:
        data: Any = None
        for event in self.events:
            kind = type(event).__name__
            if kind in ("MappingStartEvent", "SequenceStartEvent", "ScalarEvent", "AliasEvent"):
                data = self.node(event, ())
            elif kind == "DocumentEndEvent":
                break
        return data

    def node(self, event: Any, path: PathT) -> Any:
        kind = type(event).__name__
        if kind == "ScalarEvent":
            value: Any = event.value
            if event.tag != _STR_TAG and event.style in ("", None) and event.tag is None:
                value = resolve_plain(event.value)
        elif kind == "AliasEvent":
            return self.anchors.get(event.anchor)
        elif kind == "MappingStartEvent":
            value = self.mapping(path)
        else:
            value = self.sequence(path)
        if event.anchor:
            self.anchors[event.anchor] = value
        return value

    def _mark(self, path: PathT, key_event: Any, value_event: Any) -> None:
        km, vm = key_event.start_mark, value_event.start_mark
        self.marks[path] = (km.line + 1, km.column + 1, vm.line + 1, vm.column + 1)

    def mapping(self, path: PathT) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        events = self.events
        while True:
            key_event = next(events)
            if type(key_event).__name__ == "MappingEndEvent":
                return out
            key = self.node(key_event, path)
            if isinstance(key, list | dict):
                key = str(key)
            value_event = next(events)
            sub = (*path, key)
            value = self.node(value_event, sub)
            if key in out:
                mark = key_event.start_mark
                self.problems.append(
                    YamlProblem(
                        f"duplicate key {key!r} (first on line {first_line[key]})",
                        mark.line + 1,
                        mark.column + 1,
                        sub,
                        "remove one of the two entries or merge them",
                    )
                )
                continue
            first_line[key] = key_event.start_mark.line + 1
            out[key] = value
            if self.with_marks:
                self._mark(sub, key_event, value_event)

    def sequence(self, path: PathT) -> list[Any]:
        out: list[Any] = []
        events = self.events
        while True:
            event = next(events)
            if type(event).__name__ == "SequenceEndEvent":
                return out
            sub = (*path, len(out))
            out.append(self.node(event, sub))
            if self.with_marks:
                self._mark(sub, event, event)


def read_yaml_text(text: str, with_marks: bool = False) -> YamlDoc:
    """Parse YAML text; syntax errors come back as problems with their position.

    Without marks, plain block YAML (nearly every config file) takes
    fastyaml's line reader; anything else, and every error, goes through libyaml.
    """
    if not with_marks:
        data = parse_simple(text)
        if data is not NOT_SIMPLE:
            return YamlDoc(data)
    builder = _Builder(_events(text), with_marks)
    try:
        data = builder.document()
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or str(exc)
        context = f" {exc.context}" if exc.context else ""
        return YamlDoc(
            None,
            [
                YamlProblem(
                    f"YAML syntax error: {problem}{context}",
                    line,
                    col,
                    hint="check indentation, quotes and colons near this line",
                )
            ],
        )
    return YamlDoc(data, builder.problems, builder.marks)
