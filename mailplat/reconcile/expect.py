"""Run a site's routing assertions (expect.yaml) against its Directory, PURE.

Input: a loaded SiteConfig with its Expectations and the compiled Directory.
Output: one Diagnostic per failing case, located at the case in expect.yaml
(file:line:col once the loader's `locate` fills the position) and naming the
case, what was expected and what the config does. Route cases compare
config.expand labels as sets (order never matters); relay cases ask
auth.relay.decide, the same function the SMTP server asks, with a Client built
from the case's from/ip/login (a login resolved as the server resolves it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailplat.auth.relay import Client, decide
from mailplat.config.diagnostics import Diagnostic, Location, error, has_errors
from mailplat.config.directory import Directory
from mailplat.config.expand import expand
from mailplat.config.load import SiteConfig, locate
from mailplat.core.address import try_parse

EXPECT_FILE = "expect.yaml"


@dataclass(frozen=True, slots=True)
class ExpectReport:
    """How many cases ran and every failure."""

    routes: int
    relay: int
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not has_errors(list(self.diagnostics))


def _display(config: SiteConfig) -> tuple[str, Path]:
    return config.expect_file, config.root / EXPECT_FILE


def _site_arg(config: SiteConfig) -> str:
    """The site folder as the user would type it: relative to the cwd when inside it."""
    try:
        return str(config.root.relative_to(Path.cwd()))
    except ValueError:
        return str(config.root)


def normalise_label(label: str) -> str:
    """`remote:A@B.test` and `remote:a@b.test` are the same destination."""
    kind, sep, target = label.strip().partition(":")
    if not sep:
        return label.strip().lower()
    if kind in ("list", "remote"):
        parsed = try_parse(target)
        if parsed is not None:
            return f"{kind}:{parsed.key}"
    return f"{kind}:{target}"


def run_expectations(config: SiteConfig, directory: Directory) -> ExpectReport:
    """Check every case; failures come back located in expect.yaml."""
    expect = config.expect
    if expect is None:
        return ExpectReport(0, 0, ())
    file, path = _display(config)
    diags: list[Diagnostic] = []
    for i, case in enumerate(expect.routes):
        where = ("routes", i)
        rcpt = try_parse(case.address)
        if rcpt is None:
            diags.append(
                error(file, where, f"route case {i + 1}: {case.address!r} is not an address")
            )
            continue
        want = {normalise_label(x) for x in case.destinations}
        got_expansion = expand(directory, rcpt)
        got = {normalise_label(x) for x in got_expansion.labels}
        if want != got:
            diags.append(
                Diagnostic(
                    "error",
                    f"route case {i + 1} fails: {case.address} should land on "
                    f"{', '.join(sorted(want)) or '(nothing)'} but lands on "
                    f"{', '.join(sorted(got)) or '(nothing)'}",
                    Location(file, where),
                    detail="; ".join(t.strip() for t in got_expansion.trace),
                    hint=f"run `mailplat route {case.address} --site {_site_arg(config)}` "
                    "to see why, then fix the config or the case",
                )
            )
    for i, rcase in enumerate(expect.relay):
        where = ("relay", i)
        sender = try_parse(rcase.sender)
        rcpt = try_parse(rcase.to)
        name = f"relay case {i + 1} ({rcase.sender} -> {rcase.to} from {rcase.ip})"
        if sender is None or rcpt is None:
            bad = rcase.sender if sender is None else rcase.to
            diags.append(error(file, where, f"{name}: {bad!r} is not an address"))
            continue
        login_key: str | None = None
        if rcase.login is not None:
            mailbox = directory.mailbox_for_login(rcase.login)
            if mailbox is None:
                diags.append(
                    error(
                        file,
                        where,
                        f"{name}: login {rcase.login!r} matches no mailbox",
                        "use mailbox@postoffice, an address of the mailbox, or a bare name "
                        "in the default postoffice",
                    )
                )
                continue
            login_key = mailbox.key
        verdict = decide(directory, Client(ip=rcase.ip, login=login_key, sender=sender), rcpt)
        if verdict.allowed != rcase.allowed:
            want_text = "allowed" if rcase.allowed else "denied"
            got_text = "allowed" if verdict.allowed else "denied"
            diags.append(
                error(
                    file,
                    where,
                    f"{name} fails: relaying should be {want_text} but is {got_text} "
                    f"({verdict.reason})",
                    "check relay: in site.yaml, or fix the case",
                )
            )
    located = locate(diags, {file: path}) if diags else []
    return ExpectReport(len(expect.routes), len(expect.relay), tuple(located))
