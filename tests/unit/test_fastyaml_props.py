"""The line reader (config.fastyaml) reads what libyaml reads, or declines.

For random texts built from the pieces config files are made of, plus the
characters that change YAML's meaning (`:`, `#`, quotes, brackets, dashes,
odd indentation), whenever fastyaml gives data it must equal what the
libyaml builder gives, with no problem reported; every real file of the
repository must read the same both ways.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mailplat.config.fastyaml import NOT_SIMPLE, parse_simple
from mailplat.config.yamlread import _Builder, _events, read_yaml_text

ROOT = Path(__file__).resolve().parents[2]


def libyaml(text: str) -> tuple[object, int]:
    """Data and the number of problems from the libyaml builder (marks on)."""
    doc = read_yaml_text(text, with_marks=True)
    return doc.data, len(doc.problems)


words = st.sampled_from(
    [
        "m0",
        "a",
        "po00001.test",
        "true",
        "null",
        "~",
        "12",
        "-3",
        "0x1F",
        "1.5",
        ".inf",
        "x@y.test",
        "a b",
        "a:b",
        "a: b",
        "a #b",
        "a#b",
        "#c",
        "[x]",
        "{y}",
        "x,y",
        "'q'",
        '"d"',
        "it's",
        "-",
        "- z",
        "?",
        ":",
        "&a",
        "*a",
        "!t",
        "|",
        ">",
        "%",
        "@",
        "`",
        "pаypal.test",
        "é",
        "$6$salt$hash/x.y",
        "",
        " ",
        "a  ",
        "\\",
        "a]",
    ]
)
keys = st.sampled_from(
    ["a", "b", "m0", "domains", "x.test", "1", "true", "a b", "'k'", '"k"', "-k"]
)


@st.composite
def scalar_text(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["plain", "dq", "sq", "flow", "map", "comment"]))
    w = draw(words)
    if kind == "dq":
        return f'"{w}"'
    if kind == "sq":
        return "'" + w.replace("'", draw(st.sampled_from(["''", "'"]))) + "'"
    if kind == "flow":
        items = draw(st.lists(words, max_size=3))
        sep = draw(st.sampled_from([", ", ",", " , "]))
        return "[" + sep.join(items) + draw(st.sampled_from(["", ","])) + "]"
    if kind == "map":
        pairs = draw(st.lists(st.tuples(keys, words), max_size=3))
        return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    if kind == "comment":
        return f"{w} # note"
    return w


@st.composite
def yaml_text(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        indent = " " * draw(st.sampled_from([0, 0, 2, 2, 4, 1, 3, 6]))
        shape = draw(st.sampled_from(["kv", "kv", "key", "item", "itemkv", "comment", "blank"]))
        if shape == "kv":
            lines.append(f"{indent}{draw(keys)}: {draw(scalar_text())}")
        elif shape == "key":
            lines.append(f"{indent}{draw(keys)}:{draw(st.sampled_from(['', '  ', ' # c']))}")
        elif shape == "item":
            lines.append(f"{indent}- {draw(scalar_text())}")
        elif shape == "itemkv":
            lines.append(f"{indent}- {draw(keys)}: {draw(scalar_text())}")
        elif shape == "comment":
            lines.append(f"{indent}# {draw(words)}")
        else:
            lines.append("")
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""]))


def render(node: object, indent: int, style: str) -> list[str]:
    """Block YAML for a tree of dicts, lists and scalar texts."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                lines.append(f"{pad}{key}: {value}")
            else:
                lines.append(f"{pad}{key}:")
                step = 0 if isinstance(value, list) and style == "flat" else 2
                lines += render(value, indent + step, style)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, str):
                lines.append(f"{pad}- {item}")
            elif isinstance(item, dict) and item:
                sub = render(item, indent + 2, style)
                sub[0] = f"{pad}- {sub[0][indent + 2 :]}"
                lines += sub
    return lines


trees = st.recursive(
    scalar_text(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3),
        st.dictionaries(keys, inner, min_size=1, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=1200, deadline=None)
@given(st.dictionaries(keys, trees, min_size=1, max_size=4), st.sampled_from(["flat", "nested"]))
def test_well_formed_trees_read_alike(tree: dict[str, object], style: str) -> None:
    text = "\n".join(render(tree, 0, style)) + "\n"
    fast = parse_simple(text)
    if fast is NOT_SIMPLE:
        return
    data, problems = libyaml(text)
    assert problems == 0, text
    assert fast == data, text


@settings(max_examples=1200, deadline=None)
@given(yaml_text())
def test_fast_reader_agrees_with_libyaml_or_declines(text: str) -> None:
    fast = parse_simple(text)
    if fast is NOT_SIMPLE:
        return
    data, problems = libyaml(text)
    assert problems == 0, text
    assert fast == data, text
    assert type(fast) is type(data)


def test_it_takes_the_common_shapes() -> None:
    text = (
        "# yaml-language-server: $schema=x\n"
        "domains:\n"
        "  po1.test:\n"
        "    abuse: m0   # who reads abuse\n"
        "    sender_blacklist: [spam.test, 'ads.test']\n"
        "  other.test: {catchall: m0}\n"
        "default_quota_mb: 100\n"
        "mailboxes:\n"
        "  m0:\n"
        '    password: "$6$abc$def/ghi."\n'
        "    addresses:\n"
        "    - alias@po1.test\n"
        "    - 'it''s@po1.test'\n"
        "  m1: {}\n"
        "lists:\n"
        "  news:\n"
        "    members:\n"
        "      - a@po1.test\n"
    )
    fast = parse_simple(text)
    assert fast is not NOT_SIMPLE
    assert fast == libyaml(text)[0]
    assert fast["mailboxes"]["m0"]["addresses"] == ["alias@po1.test", "it's@po1.test"]


def test_it_declines_what_it_does_not_know() -> None:
    for text in (
        "a: &x 1\nb: *x\n",
        "body: |\n  text\n",
        "a: 1\na: 2\n",
        "a: one\n  two\n",
        "a:\tb\n",
        "a: b\r\n",
        'a: "x\\ny"\n',
        "---\na: 1\n",
        "just a scalar\n",
    ):
        assert parse_simple(text) is NOT_SIMPLE, text


def test_every_yaml_file_in_the_repository_reads_the_same() -> None:
    files = [
        p
        for p in (*ROOT.glob("sites/**/*.yaml"), *ROOT.glob("tests/**/*.yaml"))
        if ".venv" not in p.parts
    ]
    assert files
    for path in files:
        text = path.read_text("utf-8")
        fast = parse_simple(text)
        if fast is NOT_SIMPLE:
            continue
        assert fast == _Builder(_events(text), False).document(), path
