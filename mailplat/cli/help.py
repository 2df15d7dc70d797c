"""Help screens that say what to type: flags show no type, values a metavar.

typer 0.29 renders a parameter without a metavar by its Python annotation in
angle brackets (`<str>`, `<path>`), and its rich formatter does so for flags
too, which take no value (`--json <bool>`, even `--help <bool>`); its plain
formatter already skips flags. Rather than a metavar on every one of our
parameters, `readable` walks the built command tree once, before it runs:
flags get an empty metavar, arguments their name in capitals (SITE), and
values a word for what they take (TEXT, PATH, N). A metavar a command set
itself (DIR, LOGIN) is kept; on an argument it is the whole story
(`[SITE] ID`, `[SITE] [ID]...` for a list whose first item may be the
site): the usage line shows it as written, without typer's `{...}...`
wrapping, and the type column stays empty instead of `<list[str]>`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

# annotation name -> metavar, the words click used before typer's <type> labels.
_WORDS = {"str": "TEXT", "int": "N", "float": "NUMBER", "bool": "BOOLEAN"}


def _commands(command: Any) -> Iterator[Any]:
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _commands(sub)


def _metavar(param: Any) -> str | None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    return _word(param)


def _word(param: Any) -> str | None:
    desc = param.type_descriptor
    if desc.is_choice:
        return None  # typer lists the choices, which is what to type
    if desc.is_path or getattr(desc, "is_file", False):
        return "PATH"
    word = _WORDS.get(param.bare_type())
    if word is None:
        return None
    return f"{word}..." if desc.is_list else word


def _as_written(argument: Any) -> None:
    """An argument shown by its own metavar alone, in usage and in the arguments table."""
    written = str(argument.metavar)
    argument.get_usage_pieces = lambda ctx: [written]
    argument.display_type_rich = lambda ctx: None


def readable(command: Any) -> Any:
    """Give every parameter of the tree (help options too) a metavar fit for --help."""
    for cmd in _commands(command):
        ctx = type(cmd).context_class(cmd) if hasattr(cmd, "context_class") else None
        help_option = cmd.get_help_option(ctx) if ctx is not None else None
        for param in [*cmd.params, help_option]:
            if param is None:
                continue
            if param.metavar is not None:
                if param.param_type_name == "argument":
                    _as_written(param)
                continue
            if param.param_type_name == "argument":
                # An argument's metavar is its name in the usage line; its type
                # column ignores the metavar, so it gets the word directly.
                param.metavar = str(param.name).upper()
                word = _word(param)
                if word is not None:
                    param.display_type_rich = lambda ctx, word=word: word
                continue
            param.metavar = _metavar(param)
    return command


def build(app: typer.Typer) -> Any:
    """The click command of a typer app, with readable help."""
    return readable(typer.main.get_command(app))
