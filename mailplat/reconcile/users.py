"""Bulk mailbox import/export: the seed's CSV format in and out of postoffice YAML.

Import input: CSV rows `emailaddress,password,quota` (password and quota
optional; a header row is recognised; a plain password is hashed with
argon2id, a hash is kept). The file is read as UTF-8, with or without the
byte order mark Excel's "CSV UTF-8" puts first (UTF-16 with its BOM too);
any other encoding must be named (`encoding=`), because a guessed one turns
a password into other characters that nobody can see once it is hashed.
Every message names its source and line (`users.csv:4:`, `<stdin>:4:`).

Import output: the postoffice's YAML file edited with ruamel.yaml's
round-trip mode, so comments, key order and quoting stay as the admin wrote
them; domains are added when needed; an existing mailbox is updated, never
duplicated. The edited site is loaded and validated before the
change is kept: an import that would make the site invalid is rolled back and
reported with every diagnostic.

Export input: a loaded site. Output: rows of chosen fields for every mailbox.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from mailplat.auth.passwords import hash_password
from mailplat.config.directory import Directory, Kind
from mailplat.config.load import SCHEMA_LINE, SiteConfig, load_site
from mailplat.config.models.base import Name
from mailplat.config.models.postoffice import HASH_PREFIXES, strip_scheme
from mailplat.core.address import try_parse
from mailplat.core.errors import ConfigError, MailplatError
from mailplat.reconcile.state import atomic_write

EXPORT_FIELDS = (
    "email",
    "password",
    "quota",
    "postoffice",
    "mailbox",
    "addresses",
    "type",
    "disabled",
    "logon_disabled",
)
DEFAULT_EXPORT_FIELDS = ("email", "password", "quota")


class UsersError(MailplatError):
    """CSV rows cannot be imported; `problems` holds one message per bad line."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


_NAME = TypeAdapter(Name)


def _check_name(value: str, what: str) -> None:
    try:
        _NAME.validate_python(value)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise UsersError(f"{what} {value!r} is not usable: {msg}") from exc


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    email: str
    password: str | None
    quota: int | str | None
    source: str = "CSV"

    @property
    def where(self) -> str:
        """`file:line` of the row, for messages."""
        return f"{self.source}:{self.line}"


@dataclass
class ImportResult:
    file: Path
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    domains_added: list[str] = field(default_factory=list)


_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode_csv(data: bytes, source: str = "CSV", encoding: str | None = None) -> str:
    """The text of a CSV file: UTF-8 (a leading BOM dropped) unless `encoding` names another.

    A file that is not UTF-8 raises UsersError naming the line and byte, and
    how to fix it; no encoding is guessed (see the module docstring).
    """
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except LookupError:
            raise UsersError(f"{source}: unknown encoding {encoding!r}") from None
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise UsersError(
                f"{source}:{line}: byte 0x{data[exc.start]:02x} is not {encoding} text"
            ) from None
        return text.removeprefix("\ufeff")
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16").removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise UsersError(f"{source}: starts as UTF-16 but is not UTF-16 text") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsersError(
            f"{source}:{line}: byte 0x{data[exc.start]:02x} is not UTF-8: save the file as "
            "CSV UTF-8 (Excel: Save As, CSV UTF-8), or name its encoding, e.g. "
            "--encoding cp1252 for Excel's plain CSV on Windows"
        ) from None


def read_csv(data: bytes, source: str = "CSV", encoding: str | None = None) -> list[ImportRow]:
    """Rows of the seed format from a file's bytes (decode_csv, then parse_csv)."""
    return parse_csv(decode_csv(data, source, encoding), source)


def parse_csv(text: str, source: str = "CSV") -> list[ImportRow]:
    """Rows of the seed format; raise UsersError naming every bad line."""
    rows: list[ImportRow] = []
    problems: list[str] = []
    # A BOM the caller left in would hide the header row behind "\ufeff".
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    end = 0
    for cells in reader:
        # The line the record starts on: a quoted cell may span several lines.
        lineno, end = end + 1, reader.line_num
        cells = [c.strip() for c in cells]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if lineno == 1 and cells[0].lower() in ("emailaddress", "email", "address"):
            continue  # header row
        if len(cells) > 3:
            problems.append(f"{source}:{lineno}: expected at most 3 columns, got {len(cells)}")
            continue
        email = cells[0]
        password = cells[1] if len(cells) > 1 and cells[1] else None
        quota_text = cells[2] if len(cells) > 2 and cells[2] else None
        quota: int | str | None = None
        if quota_text is not None:
            if quota_text.lower() == "unlimited":
                quota = "unlimited"
            elif quota_text.isdigit():
                quota = int(quota_text)
            else:
                problems.append(
                    f"{source}:{lineno}: quota {quota_text!r} is not a number of MB or unlimited"
                )
                continue
        if try_parse(email) is None:
            problems.append(f"{source}:{lineno}: {email!r} is not a mail address")
            continue
        rows.append(ImportRow(lineno, email, password, quota, source))
    if problems:
        raise UsersError(problems)
    return rows


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, order and quotes survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long hashes onto two lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _is_hash(value: str) -> bool:
    return strip_scheme(value).startswith(HASH_PREFIXES)


def _child_map(parent: Any, key: str) -> Any:
    if parent.get(key) is None:
        parent[key] = CommentedMap()
    return parent[key]


def import_users(
    site_dir: Path,
    postoffice: str,
    rows: Sequence[ImportRow],
    *,
    hasher: Any = hash_password,
) -> ImportResult:
    """Write `rows` into postoffices/<postoffice>.yaml; validate the site or roll back."""
    path = site_dir / "postoffices" / f"{postoffice}.yaml"
    _check_name(postoffice, "postoffice name")
    original = path.read_text("utf-8") if path.exists() else None
    # Domains owned by other postoffices must not be created here.
    config = load_site(site_dir)
    directory = Directory(config)
    other_domains = {
        d: po_name
        for po_name, po in config.postoffices.items()
        if po_name != postoffice
        for d in po.domains
    }
    yaml = _yaml()
    data = yaml.load(original) if original else None
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise UsersError(f"{path} does not hold a mapping")
    domains = _child_map(data, "domains")
    mailboxes = _child_map(data, "mailboxes")
    auto = bool(data.get("auto_address", True))
    result = ImportResult(path)
    for row in rows:
        parsed = try_parse(row.email)
        assert parsed is not None  # parse_csv checked it
        if parsed.domain in other_domains:
            raise UsersError(
                f"{row.where}: domain {parsed.domain} belongs to postoffice "
                f"{other_domains[parsed.domain]}, not {postoffice}"
            )
        # An address that already reaches a mailbox of this postoffice updates that mailbox.
        known = directory.addresses.get(parsed.key)
        name = parsed.local
        if known is not None and known[0] is Kind.MAILBOX and known[1].startswith(f"{postoffice}/"):
            name = known[1].split("/", 1)[1]
        _check_name(name, f"{row.where}: mailbox name")
        if parsed.domain not in domains:
            domains[parsed.domain] = CommentedMap()
            result.domains_added.append(parsed.domain)
        existing = next((k for k in mailboxes if str(k).lower() == name.lower()), None)
        if existing is None:
            mailboxes[name] = CommentedMap()
            entry = mailboxes[name]
            result.added.append(row.email)
        else:
            if mailboxes[existing] is None:
                mailboxes[existing] = CommentedMap()
            entry = mailboxes[existing]
            result.updated.append(row.email)
        if row.password is not None:
            hashed = row.password if _is_hash(row.password) else hasher(row.password)
            # Quoted like the hashes an admin pastes: `$` and `/` read better in quotes.
            entry["password"] = DoubleQuotedScalarString(hashed)
        if row.quota is not None:
            entry["quota_mb"] = row.quota
        if not auto:
            addresses = entry.get("addresses")
            have = {str(a).lower() for a in addresses or []}
            if parsed.key not in have:
                if addresses is None:
                    entry["addresses"] = [parsed.key]
                else:
                    addresses.append(parsed.key)
    buf = io.StringIO()
    if original is None:
        buf.write(f"{SCHEMA_LINE}../../../schemas/postoffice.schema.json\n")
    yaml.dump(data, buf)
    atomic_write(path, buf.getvalue().encode("utf-8"))
    try:
        load_site(site_dir)
    except ConfigError:
        # Put the file back as it was: a bad import must not leave a broken site.
        if original is None:
            path.unlink()
        else:
            atomic_write(path, original.encode("utf-8"))
        raise
    return result


def _quota_text(value: int | None) -> str:
    return "unlimited" if value is None else str(value // (1024 * 1024))


def export_rows(
    config: SiteConfig, fields: Iterable[str], postoffice: str | None = None
) -> list[list[str]]:
    """One row per mailbox with the chosen fields (see EXPORT_FIELDS)."""
    chosen = list(fields)
    unknown = [f for f in chosen if f not in EXPORT_FIELDS]
    if unknown:
        raise MailplatError(
            f"unknown field(s) {', '.join(unknown)}; choose from {', '.join(EXPORT_FIELDS)}"
        )
    directory = Directory(config)
    rows: list[list[str]] = []
    for entry in directory.mailboxes.values():
        if postoffice is not None and entry.postoffice != postoffice:
            continue
        values = {
            "email": entry.primary,
            "password": entry.model.password or "",
            "quota": _quota_text(entry.quota_bytes),
            "postoffice": entry.postoffice,
            "mailbox": entry.name,
            "addresses": " ".join(entry.addresses),
            "type": entry.model.type,
            "disabled": str(entry.model.disabled).lower(),
            "logon_disabled": str(entry.model.logon_disabled).lower(),
        }
        rows.append([values[f] for f in chosen])
    return rows


def write_csv(rows: Iterable[Sequence[str]], header: Sequence[str] | None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()
