"""Load a site folder into validated models, or every error with file:line:col.

Input: `sites/<site>/` holding site.yaml, postoffices/*.yaml, optional
expect.yaml. Output: a SiteConfig (frozen) and its warnings, or ConfigError
carrying every Diagnostic at once (syntax, shape, unknown keys with a "did you
mean", type errors in our words from explain.py, cross-object rules from
validate.py). Cross-object rules run even when some files have field errors:
over every file that parsed, a postoffice whose only errors sit in some
mailboxes/groups/lists without those entries, and site.yaml with its failing
keys at their defaults; Gaps tells the rules what is missing so none guesses.
File names are relative to the current directory (or `relative_to`).

Fast path: fastyaml's line reader (libyaml for anything else) and pydantic,
with positions computed only for files that have something to report; a
big site's files are read on two cores (pool.py); each postoffice is
compiled alone into a Segment (segment.py) that the checks and the Directory
merge. The cyclic garbage collector is paused while a site is built. A
LoadCache keeps parsed postoffice files by (mtime, size) and the tables of
the last load, so a reload stats every file but re-reads, re-validates and
patches in only what changed (config.change checks only what that can break).
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import hashlib
import os
import threading
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mailplat.config.diagnostics import Diagnostic, Location, error, has_errors
from mailplat.config.explain import Explained, combine, explain
from mailplat.config.models.expect import Expectations
from mailplat.config.models.postoffice import Postoffice
from mailplat.config.models.site import Site
from mailplat.config.pool import map_in_two
from mailplat.config.segment import Segment, compile_postoffice
from mailplat.config.yamlread import PathT, YamlDoc, read_yaml_text
from mailplat.core.address import normalise_domain
from mailplat.core.errors import AddressError, ConfigError

M = TypeVar("M", bound=BaseModel)

SCHEMA_LINE = "# yaml-language-server: $schema="


@dataclass(frozen=True)
class SiteConfig:
    """A loaded, validated site.

    Files are named as the admin can paste them: relative to the folder the
    load was asked from (the current directory), or absolute when outside it.
    """

    root: Path
    name: str
    site: Site
    postoffices: dict[str, Postoffice]
    files: dict[str, str]  # postoffice name -> display path of its file
    site_file: str
    expect: Expectations | None
    digest: str  # hash of every file's content: the config's identity
    warnings: tuple[Diagnostic, ...] = ()
    expect_file: str = "expect.yaml"  # display path of expect.yaml
    # Each postoffice compiled alone (config.segment), reused while its file is unchanged.
    segments: Mapping[str, Segment] = field(default_factory=dict)
    # Digests of the files: site.yaml, each postoffice (by name) and expect.yaml.
    site_digest: str = ""
    po_digests: Mapping[str, str] = field(default_factory=dict)

    def file_of(self, postoffice: str) -> str:
        return self.files[postoffice]


@dataclass
class _Cached:
    stamp: tuple[int, int]
    digest: str
    model: Postoffice | None
    diags: list[Diagnostic]
    # A model kept without the entries that failed: {"mailboxes": {names}, ...}.
    pruned: dict[str, set[str]] = field(default_factory=dict)
    display: str = ""
    segment: Segment | None = None
    # A `name:` that is not the file's name: an error of its own, which must
    # not make other rules miss this postoffice.
    name_diags: list[Diagnostic] = field(default_factory=list)

    def compiled(self, name: str) -> Segment | None:
        """The postoffice compiled alone, once per parse of the file."""
        if self.segment is None and self.model is not None:
            pruned = {k: frozenset(v) for k, v in self.pruned.items()}
            self.segment = compile_postoffice(name, self.model, self.display, pruned)
        return self.segment


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_was_on = False


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a site is built.

    A big site allocates millions of small acyclic objects (dicts, models,
    entries); every few thousand allocations the collector would walk all
    of them again, which doubles the time of a cold load. Nested and
    concurrent uses are counted; the collector comes back when the last ends.
    """
    global _gc_depth, _gc_was_on
    with _gc_lock:
        if _gc_depth == 0:
            _gc_was_on = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_was_on:
                gc.enable()


@dataclass
class Gaps:
    """What did not parse, so cross-object checks skip what they cannot judge.

    Cross-object rules run even when some files have field errors ("every
    error at once"), over the objects that did parse; a rule whose answer
    could depend on a missing object stays silent rather than guess.
    """

    site: bool = False  # site.yaml did not parse: site-level rules are skipped
    site_dropped: set[PathT] = field(default_factory=set)  # site.yaml keys left at defaults
    postoffices: set[str] = field(default_factory=set)  # file stems that did not parse
    pruned: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # po -> coll -> names

    def removed(self, postoffice: str, collection: str, name: str) -> bool:
        return name in self.pruned.get(postoffice, {}).get(collection, set())

    def incomplete(self, postoffice: str) -> bool:
        return bool(self.pruned.get(postoffice))

    def site_ok(self, *sections: PathT) -> bool:
        """True when site.yaml parsed and no failed key lies in (or above) these sections."""
        if self.site:
            return False
        return not any(
            d[: len(sec)] == sec or sec[: len(d)] == d
            for d in self.site_dropped
            for sec in sections
        )


@dataclass
class LoadCache:
    """Parsed postoffice files by path, reused while (mtime, size) is unchanged."""

    entries: dict[str, _Cached] = field(default_factory=dict)
    parsed: int = 0  # postoffice files parsed by the last load (for tests and status)
    assembled: _Postoffices | None = None  # the tables of the last load, to patch
    # site.yaml and expect.yaml: (stamp, what _load_file gave), reused when clean.
    singles: dict[str, tuple[tuple[int, int], Any]] = field(default_factory=dict)


def _display(path: Path, base: Path) -> str:
    """`path` relative to base when it lies inside it (pasteable), else absolute."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _model_at(model: Any, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class a pydantic loc points into (to suggest valid keys)."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            info = tp.model_fields.get(str(part))
            if info is None:
                info = next((f for f in tp.model_fields.values() if f.alias == part), None)
            if info is None:
                return None
            tp = info.annotation
        elif typing.get_origin(tp) in (dict, list):
            tp = typing.get_args(tp)[-1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Optional/Annotated down to the interesting type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
            if not models and len(args) > 1:
                return tp
        else:
            return tp


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[PathT, bool]:
    """The longest prefix of loc that exists in data; True if loc ends on a dict key."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if part == "[key]":
            return tuple(path), True
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        else:
            break
        path.append(part)
    return tuple(path), False


def _value_at(data: Any, path: PathT) -> Any:
    node = data
    for part in path:
        node = node[part]
    return node


def validation_diagnostics(
    model: type[BaseModel], data: Any, exc: ValidationError, file: str, base: PathT = ()
) -> list[Diagnostic]:
    """Turn a pydantic ValidationError into diagnostics, one per problem place, in our words."""
    grouped: dict[tuple[PathT, str], list[Explained]] = {}
    hints: dict[tuple[PathT, str], str] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        path, on_key = _data_path(data, loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            owner = _model_at(model, loc[:-1])
            fields = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(fields)}"
            gkey = (path, f"unknown key {key!r}")
            grouped.setdefault(gkey, [])
            hints[gkey] = hint
        elif kind == "missing":
            gkey = (path, f"missing required key {loc[-1]!r}")
            grouped.setdefault(gkey, [])
            hints[gkey] = f"add `{loc[-1]}:` here"
        else:
            what = "key" if on_key else "value"
            gkey = (path, f"invalid {what}")
            grouped.setdefault(gkey, []).append(explain(err))
    out = []
    for (path, summary), items in grouped.items():
        if items:
            value = path[-1] if summary == "invalid key" and path else _value_at(data, path)
            text, hint = combine(items, value)
            summary = f"{summary}: {text}"
        else:
            hint = hints.get((path, summary), "")
        out.append(error(file, (*base, *path), summary, hint))
    return out


def _validate(model: type[M], data: Any, file: str) -> tuple[M | None, list[Diagnostic]]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [error(file, (), "the file must hold a mapping (key: value lines)")]
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, validation_diagnostics(model, data, exc, file)


PRUNABLE = ("mailboxes", "groups", "lists")


def _pruned_model(
    data: Any, diags: list[Diagnostic]
) -> tuple[Postoffice | None, dict[str, set[str]]]:
    """The postoffice without the mailboxes, groups and lists that failed, if that parses.

    Only when every error sits inside one such entry: then the rest of the
    file is still checked against the other files. A broken domain or a
    top-level key leaves the whole file out.
    """
    if not isinstance(data, dict):
        return None, {}
    drop: dict[str, set[str]] = {}
    for d in diags:
        path = d.location.path if d.location else ()
        if len(path) < 2 or path[0] not in PRUNABLE or not isinstance(data.get(path[0]), dict):
            return None, {}
        drop.setdefault(str(path[0]), set()).add(str(path[1]))
    if not drop:
        return None, {}
    kept = dict(data)
    for coll, names in drop.items():
        kept[coll] = {k: v for k, v in data[coll].items() if str(k) not in names}
    try:
        return Postoffice.model_validate(kept), drop
    except ValidationError:
        return None, {}


def _problem_diags(doc: YamlDoc, file: str) -> list[Diagnostic]:
    return [
        Diagnostic("error", p.message, Location(file, p.path, p.line, p.col), hint=p.hint)
        for p in doc.problems
    ]


# A file read and parsed: its digest and YAML document, or why it cannot be read.
Parsed = tuple[str, YamlDoc | None, str]


def _parse_file(path: Path | str) -> Parsed:
    """Read and parse one file (no positions); plain data, cheap to pickle."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return "", None, str(exc)
    return hashlib.sha256(raw).hexdigest(), read_yaml_text(text), ""


def _load_file(
    path: Path | str, display: str, model: type[M], parsed: Parsed | None = None
) -> tuple[str, M | None, list[Diagnostic], Any]:
    """Read and validate one file; returns its digest, model, diagnostics and raw data."""
    digest, doc, why = parsed or _parse_file(path)
    if doc is None:
        return "", None, [error(display, (), f"cannot read file: {why}")], None
    diags = _problem_diags(doc, display)
    if (
        doc.data is None
        and doc.problems
        and not any("duplicate" in p.message for p in doc.problems)
    ):
        return digest, None, diags, None
    obj, more = _validate(model, doc.data, display)
    return digest, obj, diags + more, doc.data


def _site_without(data: Any, diags: list[Diagnostic]) -> tuple[Site | None, set[PathT]]:
    """site.yaml with every failing key left at its default, if that parses."""
    paths = {d.location.path for d in diags if d.location}
    if not isinstance(data, dict) or not paths or () in paths:
        return None, set()

    def without(node: Any, prefix: PathT) -> Any:
        if isinstance(node, dict):
            return {
                k: without(v, (*prefix, k)) for k, v in node.items() if (*prefix, k) not in paths
            }
        if isinstance(node, list):
            return [
                without(v, (*prefix, i)) for i, v in enumerate(node) if (*prefix, i) not in paths
            ]
        return node

    try:
        return Site.model_validate(without(data, ())), paths
    except ValidationError:
        return None, set()


Job = tuple[str, str, str, tuple[int, int]]  # name, path, display, stamp


def _parse_job(job: Job) -> Parsed:
    return _parse_file(job[1])


def _finish_job(job: Job, parsed: Parsed) -> _Cached:
    """Validate and compile (the checks' share) one parsed postoffice file."""
    name, path, display, stamp = job
    entry = _load_postoffice(path, display, stamp, parsed)
    if entry.model is not None and entry.model.name and entry.model.name != name:
        entry.name_diags.append(
            error(
                display,
                ("name",),
                f"postoffice name {entry.model.name!r} does not match the file name",
                f"rename the file to {entry.model.name}.yaml or drop `name:`",
            )
        )
    seg = entry.compiled(name)
    if seg is not None:
        seg.checks  # noqa: B018 - computed while the pool's child parses other files
    return entry


def _load_postoffice(
    path: Path | str, display: str, stamp: tuple[int, int], parsed: Parsed | None = None
) -> _Cached:
    d, po, diags, data = _load_file(path, display, Postoffice, parsed)
    pruned: dict[str, set[str]] = {}
    if po is None and diags:
        po, pruned = _pruned_model(data, diags)
    return _Cached(stamp, d, po, diags, pruned, display)


# Rules about a key itself (a name, a domain), located at the key rather than its value.
KEY_RULES = frozenset({"mixed-script", "confusable-domain", "reserved-name"})


def _as_written(path: PathT, table: dict[PathT, tuple[int, int, int, int]]) -> PathT:
    """The path as the file spells it: models normalise domain keys (IDNA, case)."""
    if path in table:
        return path
    prefix: PathT = ()
    for part in path:
        step = (*prefix, part)
        if step not in table and isinstance(part, str):
            for key in table:
                if len(key) == len(step) and key[:-1] == prefix and _same_key(key[-1], part):
                    step = key
                    break
        prefix = step
    return prefix


def _same_key(written: object, normalised: str) -> bool:
    if not isinstance(written, str):
        return False
    try:
        return normalise_domain(written) == normalised
    except AddressError:
        return False


def locate(diags: list[Diagnostic], files: dict[str, Path]) -> list[Diagnostic]:
    """Fill line/col of diagnostics that only know their path, re-reading just those files."""
    need = {d.location.file for d in diags if d.location and not d.location.line}
    marks: dict[str, dict[PathT, tuple[int, int, int, int]]] = {}
    for display in need:
        path = files.get(display)
        if path is None:
            continue
        try:
            marks[display] = read_yaml_text(path.read_text("utf-8"), with_marks=True).marks
        except (OSError, UnicodeDecodeError):
            continue
    out = []
    for d in diags:
        loc = d.location
        if loc is None or loc.line or loc.file not in marks:
            out.append(d)
            continue
        table = marks[loc.file]
        at = _as_written(loc.path, table)
        # Walk up to the nearest path we know (a missing key points at its parent).
        while at and at not in table:
            at = at[:-1]
        if at:
            kl, kc, vl, vc = table[at]
            on_key = d.code in KEY_RULES or d.summary.startswith(
                ("unknown key", "invalid key", "duplicate")
            )
            full = len(at) == len(loc.path)
            out.append(d.located(kl, kc) if on_key or not full else d.located(vl, vc))
        else:
            out.append(d.located(1, 1))
    return out


@dataclass
class SiteRead:
    """A site read from disk before the cross-object rules: what load_site and
    config.change share."""

    config: SiteConfig
    diags: list[Diagnostic]  # syntax, shape and file-level errors
    gaps: Gaps
    files: dict[str, str]  # display name -> path, for positions of diagnostics
    site_model: Site | None  # None when site.yaml did not parse

    @property
    def clean(self) -> bool:
        """Every file parsed and validated on its own."""
        gaps = self.gaps
        return not (self.diags or gaps.site or gaps.site_dropped or gaps.postoffices or gaps.pruned)


def _cached_file(
    cache: LoadCache | None, path: Path, display: str, model: type[M]
) -> tuple[str, M | None, list[Diagnostic], Any]:
    """_load_file, reusing the last result while (mtime, size) is unchanged."""
    try:
        st = path.stat()
    except OSError:
        return _load_file(path, display, model)
    stamp = (st.st_mtime_ns, st.st_size)
    key = f"{model.__name__}:{path}"
    hit = cache.singles.get(key) if cache is not None else None
    if hit is not None and hit[0] == stamp and hit[1][2] == [] and hit[1][3] is not None:
        return hit[1][0], hit[1][1], [], hit[1][3]
    result = _load_file(path, display, model)
    if cache is not None:
        cache.singles[key] = (stamp, result)
    return result


@dataclass
class _Postoffices:
    """The postoffice files as last read: what a reload patches instead of rebuilding."""

    names: tuple[str, ...]  # file names, sorted
    prefix: str  # display prefix of the postoffices folder
    order: list[str]  # postoffice names, in file order
    paths: list[str]
    entries: list[_Cached]
    files: dict[str, str]  # display -> path
    postoffices: dict[str, Postoffice]
    po_files: dict[str, str]
    segments: dict[str, Segment]
    po_digests: dict[str, str]  # in file order: the site digest hashes them in turn
    with_diags: list[int]  # indexes of entries with diagnostics


def _stamp(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, -1)
    return (st.st_mtime_ns, st.st_size)


def _read_postoffices(
    po_dir: str,
    prefix: str,
    names: tuple[str, ...],
    cache: LoadCache | None,
    last: _Postoffices | None,
) -> _Postoffices:
    """Read the postoffice files that changed since `last` (all without it).

    With `last` (same files as before), only a stat per file and the changed
    files' entries are new: the tables are copies of the last ones, patched.
    Many files are read on two cores (pool.map_in_two).
    """
    if last is not None:
        jobs: list[tuple[int, Job]] = []
        stat = os.stat
        for i, (path, entry) in enumerate(zip(last.paths, last.entries, strict=True)):
            try:
                st = stat(path)
                stamp = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = (0, -1)
            if stamp != entry.stamp:
                jobs.append((i, (last.order[i], path, entry.display, stamp)))
        loaded = map_in_two(_parse_job, _finish_job, [job for _, job in jobs])
        if cache is not None:
            cache.parsed = len(loaded)
            cache.entries.update(
                (job[1], entry) for (_, job), entry in zip(jobs, loaded, strict=True)
            )
        if not jobs:
            return last
        pos = _Postoffices(
            names,
            prefix,
            last.order,
            last.paths,
            list(last.entries),
            last.files,
            last.postoffices.copy(),
            last.po_files.copy(),
            last.segments.copy(),
            last.po_digests.copy(),
            [],
        )
        reorder = False
        for (i, job), entry in zip(jobs, loaded, strict=True):
            name = job[0]
            pos.entries[i] = entry
            pos.po_digests[name] = entry.digest
            seg = entry.compiled(name)
            if entry.model is None or seg is None or name not in pos.postoffices:
                reorder = True  # a postoffice joins or leaves the tables
            else:
                pos.postoffices[name] = entry.model
                pos.po_files[name] = entry.display
                pos.segments[name] = seg
        if reorder:
            # The tables keep file order (the checks report in it): build them again.
            pos.postoffices, pos.po_files, pos.segments = {}, {}, {}
            for name, entry in zip(pos.order, pos.entries, strict=True):
                seg = entry.compiled(name)
                if entry.model is not None and seg is not None:
                    pos.postoffices[name] = entry.model
                    pos.po_files[name] = entry.display
                    pos.segments[name] = seg
        pos.with_diags = [i for i, e in enumerate(pos.entries) if e.diags or e.name_diags]
        return pos
    order: list[str] = []
    paths: list[str] = []
    files: dict[str, str] = {}
    all_jobs: list[Job] = []
    for file_name in names:
        path = f"{po_dir}/{file_name}"
        display = file_name if prefix == "." else f"{prefix}/{file_name}"
        name = file_name[: -len(".yaml")]
        order.append(name)
        paths.append(path)
        files[display] = path
        all_jobs.append((name, path, display, _stamp(path)))
    known = cache.entries if cache is not None else {}
    todo = [
        job
        for job in all_jobs
        if (hit := known.get(job[1])) is None or hit.stamp != job[3] or hit.display != job[2]
    ]
    fresh = dict(
        zip((job[1] for job in todo), map_in_two(_parse_job, _finish_job, todo), strict=True)
    )
    if cache is not None:
        for gone in set(cache.entries) - set(paths):
            del cache.entries[gone]
        cache.entries.update(fresh)
        cache.parsed = len(fresh)
    entries = [fresh.get(path) or known[path] for path in paths]
    pos = _Postoffices(names, prefix, order, paths, entries, files, {}, {}, {}, {}, [])
    for i, (name, entry) in enumerate(zip(order, entries, strict=True)):
        pos.po_digests[name] = entry.digest
        if entry.diags or entry.name_diags:
            pos.with_diags.append(i)
        seg = entry.compiled(name)
        if entry.model is not None and seg is not None:
            pos.postoffices[name] = entry.model
            pos.po_files[name] = entry.display
            pos.segments[name] = seg
    return pos


def read_site(
    site_dir: Path, cache: LoadCache | None = None, *, relative_to: Path | None = None
) -> SiteRead:
    """Read every file of a site (only changed ones when a cache is given); no cross checks."""
    site_dir = site_dir.resolve()
    base = (relative_to or Path.cwd()).resolve()
    if not site_dir.is_dir():
        raise ConfigError(
            [Diagnostic("error", f"site folder {site_dir} does not exist")], "no such site"
        )
    files: dict[str, str] = {}
    diags: list[Diagnostic] = []
    gaps = Gaps()
    digest = hashlib.sha256()

    site_path = site_dir / "site.yaml"
    site_display = _display(site_path, base)
    files[site_display] = str(site_path)
    site_digest = ""
    site: Site | None
    if site_path.exists():
        site_digest, site, more, site_data = _cached_file(cache, site_path, site_display, Site)
        digest.update(site_digest.encode())
        diags += more
        if site is None and more:
            site, gaps.site_dropped = _site_without(site_data, more)
    else:
        site = Site()
        gaps.site = True
        diags.append(
            error(site_display, (), "site.yaml is missing", "create it; `{}` is a valid minimum")
        )
    site_model = site if not gaps.site and not gaps.site_dropped else None

    po_dir = str(site_dir / "postoffices")
    prefix = _display(Path(po_dir), base)
    try:
        names = tuple(sorted(e.name for e in os.scandir(po_dir) if e.name.endswith(".yaml")))
    except (FileNotFoundError, NotADirectoryError):
        names = ()
    last = cache.assembled if cache is not None else None
    if last is None or last.names != names or last.prefix != prefix:
        last = None
    pos = _read_postoffices(po_dir, prefix, names, cache, last)
    if cache is not None:
        cache.assembled = pos
    files.update(pos.files)
    for i in pos.with_diags:
        diags += pos.entries[i].diags + pos.entries[i].name_diags
    for i, entry in enumerate(pos.entries):
        if entry.model is None:
            gaps.postoffices.add(pos.order[i])
        elif entry.pruned:
            gaps.pruned[pos.order[i]] = entry.pruned
    digest.update("".join(pos.po_digests.values()).encode())
    postoffices, po_files, segments = pos.postoffices, pos.po_files, pos.segments
    po_digests = pos.po_digests

    expect: Expectations | None = None
    expect_path = site_dir / "expect.yaml"
    expect_display = _display(expect_path, base)
    if expect_path.exists():
        files[expect_display] = str(expect_path)
        d, expect, more, _ = _cached_file(cache, expect_path, expect_display, Expectations)
        digest.update(d.encode())
        diags += more

    if site is None:
        gaps.site = True
    config = SiteConfig(
        root=site_dir,
        name=site_dir.name,
        site=site or Site(),
        postoffices=postoffices,
        files=po_files,
        site_file=site_display,
        expect=expect,
        digest=digest.hexdigest(),
        expect_file=expect_display,
        segments=segments,
        site_digest=site_digest,
        po_digests=po_digests,
    )
    return SiteRead(config, diags, gaps, files, site_model)


def finish(read: SiteRead, diags: list[Diagnostic]) -> SiteConfig:
    """Positions for every diagnostic; ConfigError on any error, else the config with warnings."""
    diags = locate(diags, {k: Path(v) for k, v in read.files.items()} if diags else {})
    if has_errors(diags):
        raise ConfigError(diags)
    warnings = tuple(d for d in diags if not d.is_error)
    return SiteConfig(**{**read.config.__dict__, "warnings": warnings})


def load_site(
    site_dir: Path, cache: LoadCache | None = None, *, relative_to: Path | None = None
) -> SiteConfig:
    """Load and validate a whole site; raise ConfigError with every diagnostic.

    File names in diagnostics are relative to `relative_to` (default: the
    current directory), so `sites/example/postoffices/example.yaml:26:5` can be
    pasted into an editor; the git hook passes its export folder, which gives
    repository paths.
    """
    from mailplat.config.validate import validate_site

    with collection_paused():
        read = read_site(site_dir, cache, relative_to=relative_to)
        # Cross-object rules run over whatever parsed, so one run shows every error.
        return finish(read, read.diags + validate_site(read.config, read.gaps))


def default_data_root(site_dir: Path) -> Path:
    """The checkout's queues/<site>: the nearest ancestor holding a queues/ folder."""
    site_dir = site_dir.resolve()
    for parent in site_dir.parents:
        if (parent / "queues").is_dir():
            return parent / "queues" / site_dir.name
    return Path.cwd() / "queues" / site_dir.name


def _data_root(
    site_dir: Path, configured: str | None, override: str | None, env: str | None
) -> Path:
    """--data, else MAILPLAT_DATA, else the site's server.data_root, else queues/<site>."""
    if override:
        return Path(override).resolve()
    if env:
        return Path(env).resolve()
    if configured:
        return (site_dir.resolve() / configured).resolve()
    return default_data_root(site_dir)


def data_root_of_dir(site_dir: Path, override: str | None, env: str | None) -> Path:
    """data_root() for a site that may not load (a broken working tree).

    `status` and `queue` must still find the running server: only the
    server.data_root key of site.yaml is read, and a file that cannot even
    be parsed falls back to the default.
    """
    configured = None
    if not (override or env):
        try:
            doc = read_yaml_text((site_dir / "site.yaml").read_text())
            server = doc.data.get("server") if isinstance(doc.data, dict) else None
            root = server.get("data_root") if isinstance(server, dict) else None
            configured = root if isinstance(root, str) else None
        except (OSError, ValueError, AttributeError):
            configured = None
    return _data_root(site_dir, configured, override, env)


def data_root(config: SiteConfig, override: str | None, env: str | None) -> Path:
    """--data, else MAILPLAT_DATA, else the site's server.data_root, else queues/<site>."""
    return _data_root(config.root, config.site.server.data_root, override, env)
