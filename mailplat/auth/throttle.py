"""Failed-login throttle: per client network and per account, across connections.

Input: every failed and successful login from SMTP AUTH, POP3 and IMAP,
with the client IP and the account named. Output: whether a client network
is in its cooldown (refuse even a right password) and how long an attempt on
an account must wait first.

Rules (security.logins in site.yaml; on by default):
- a client network (one IPv4 address, or an IPv6 /64, which one attacker
  usually holds whole) that fails `max_failures_per_ip` times within
  `window_minutes` is refused for `cooldown_minutes`;
- an account never locks (that would let anyone lock a user out from
  elsewhere): past `account_slowdown_after` failures within the window each
  further attempt on it waits longer, doubling up to
  `account_max_delay_seconds` — except from a network the account logged in
  from successfully before (remembered TRUSTED_DAYS), so an attacker
  elsewhere cannot slow its owner down;
- a success clears the account's failures, never the network's (one valid
  account must not reset a guessing budget);
- clients in security.ip_whitelist are never counted or refused (logins.py).
Attempts are serialised per network and per account by logins.py, so a
burst of parallel guesses is counted one by one and meets the cooldown.

State is runtime state, not config: kept in memory and saved to
<data>/state/logins.json at most once a second (off the event loop), so a
restart or reload keeps it. Memory is bounded: expired entries are pruned
and at most MAX_ENTRIES of each kind kept (the oldest go first).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("mailplat.auth")

MAX_ENTRIES = 20_000
TRUSTED_DAYS = 30
TRUSTED_PER_ACCOUNT = 16


@dataclass(frozen=True, slots=True)
class Limits:
    """The numbers of the rules above (from security.logins)."""

    max_failures_per_ip: int = 10
    window_minutes: int = 15
    cooldown_minutes: int = 15
    account_slowdown_after: int = 5
    account_max_delay_seconds: float = 30.0


def network_of(ip: str) -> str:
    """The key a client is counted under: the IPv4 address, or the IPv6 /64."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(addr) >> 64 << 64, 64)))
    return str(addr)


@dataclass(slots=True)
class _Failures:
    times: list[float] = field(default_factory=list)
    blocked_until: float = 0.0


class LoginThrottle:
    """Failure counts by network and by account; see the module docstring."""

    def __init__(
        self,
        path: Path | None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.limits = limits or Limits()
        self._clock = clock
        self._networks: dict[str, _Failures] = {}
        self._accounts: dict[str, _Failures] = {}
        self._trusted: dict[str, dict[str, float]] = {}  # account -> network -> until
        self.dirty = False
        self._load()

    # -- questions --------------------------------------------------------------

    def cooldown(self, ip: str) -> float:
        """Seconds left before this client may try again; 0 when it may now."""
        entry = self._networks.get(network_of(ip))
        if entry is None:
            return 0.0
        return max(0.0, entry.blocked_until - self._clock())

    def account_delay(self, account: str, ip: str = "") -> float:
        """Seconds an attempt on `account` from `ip` waits before its password is checked."""
        key = account.lower()
        if ip and self._trusted.get(key, {}).get(network_of(ip), 0.0) > self._clock():
            return 0.0
        entry = self._accounts.get(key)
        if entry is None:
            return 0.0
        over = len(self._recent(entry)) - self.limits.account_slowdown_after
        if over < 0:
            return 0.0
        return float(min(self.limits.account_max_delay_seconds, 2.0**over))

    # -- events -----------------------------------------------------------------

    def failed(self, ip: str, account: str) -> bool:
        """Count a failed login; True when it just put the client in its cooldown."""
        now = self._clock()
        net = self._networks.pop(network_of(ip), None) or _Failures()
        self._networks[network_of(ip)] = net  # most recent last: pruning drops the oldest
        net.times = [*self._recent(net), now]
        key = account.lower()[:320]
        acct = self._accounts.pop(key, None) or _Failures()
        self._accounts[key] = acct
        acct.times = [*self._recent(acct), now][-64:]
        started = False
        if len(net.times) >= self.limits.max_failures_per_ip and net.blocked_until <= now:
            net.blocked_until = now + self.limits.cooldown_minutes * 60
            net.times = []
            started = True
        self._changed()
        return started

    def succeeded(self, ip: str, account: str) -> None:
        """A good login clears the account's failures (not the network's) and trusts the network."""
        key = account.lower()
        self._accounts.pop(key, None)
        trusted = self._trusted.pop(key, {})
        trusted[network_of(ip)] = self._clock() + TRUSTED_DAYS * 86400
        if len(trusted) > TRUSTED_PER_ACCOUNT:
            oldest = sorted(trusted, key=trusted.__getitem__)[: len(trusted) - TRUSTED_PER_ACCOUNT]
            for net in oldest:
                del trusted[net]
        self._trusted[key] = trusted
        self._changed()

    def _recent(self, entry: _Failures) -> list[float]:
        since = self._clock() - self.limits.window_minutes * 60
        return [t for t in entry.times if t > since]

    def _changed(self) -> None:
        self.dirty = True
        for table in (self._networks, self._accounts, self._trusted):
            while len(table) > MAX_ENTRIES:
                del table[next(iter(table))]  # the least recently touched

    # -- persistence --------------------------------------------------------------

    def _prune(self) -> None:
        now = self._clock()
        since = now - self.limits.window_minutes * 60
        for table in (self._networks, self._accounts):
            for key in [
                k
                for k, v in table.items()
                if v.blocked_until <= now and not any(t > since for t in v.times)
            ]:
                del table[key]
        for account in list(self._trusted):
            kept = {n: t for n, t in self._trusted[account].items() if t > now}
            if kept:
                self._trusted[account] = kept
            else:
                del self._trusted[account]

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text())
            for name, table in (("networks", self._networks), ("accounts", self._accounts)):
                for key, value in dict(raw.get(name, {})).items():
                    table[str(key)] = _Failures(
                        times=[float(t) for t in value.get("times", [])],
                        blocked_until=float(value.get("blocked_until", 0.0)),
                    )
            for account, nets in dict(raw.get("trusted", {})).items():
                self._trusted[str(account)] = {str(n): float(t) for n, t in dict(nets).items()}
        except (ValueError, OSError, AttributeError, TypeError) as exc:
            log.warning("auth throttle-state-unreadable path=%s why=%s", self.path, exc)
            self._networks.clear()
            self._accounts.clear()
            self._trusted.clear()
        self._prune()

    def snapshot(self) -> dict[str, Any]:
        """The state to save, taken on the event loop (cheap: copies of small lists)."""
        self._prune()
        self.dirty = False
        return {
            "networks": {
                k: {"times": list(v.times), "blocked_until": v.blocked_until}
                for k, v in self._networks.items()
            },
            "accounts": {
                k: {"times": list(v.times), "blocked_until": v.blocked_until}
                for k, v in self._accounts.items()
            },
            "trusted": {k: dict(v) for k, v in self._trusted.items()},
        }

    def write(self, data: dict[str, Any]) -> None:
        """Save a snapshot (blocking: run it in a worker thread)."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError as exc:
            # Losing the file only forgets failures; the in-memory counts still hold.
            log.warning("auth throttle-state-unwritable path=%s why=%s", self.path, exc)

    def save(self) -> None:
        """Save now (blocking), e.g. at a stop."""
        self.write(self.snapshot())
