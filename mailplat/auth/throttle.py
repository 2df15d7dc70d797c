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
  `account_max_delay_seconds`;
- a success clears the account's failures, never the network's (one valid
  account must not reset a guessing budget);
- clients in security.ip_whitelist are never counted or refused.

State is runtime state, not config: kept in memory and saved to
<data>/state/logins.json on every change, so a restart or reload keeps it.
Memory is bounded: expired entries are pruned and at most MAX_ENTRIES kept.
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

log = logging.getLogger("mailplat.auth")

MAX_ENTRIES = 100_000


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
        self._load()

    # -- questions --------------------------------------------------------------

    def cooldown(self, ip: str) -> float:
        """Seconds left before this client may try again; 0 when it may now."""
        entry = self._networks.get(network_of(ip))
        if entry is None:
            return 0.0
        return max(0.0, entry.blocked_until - self._clock())

    def account_delay(self, account: str) -> float:
        """Seconds an attempt on `account` waits before its password is checked."""
        entry = self._accounts.get(account.lower())
        if entry is None:
            return 0.0
        recent = self._recent(entry)
        over = len(recent) - self.limits.account_slowdown_after
        if over < 0:
            return 0.0
        return float(min(self.limits.account_max_delay_seconds, 2.0**over))

    # -- events -----------------------------------------------------------------

    def failed(self, ip: str, account: str) -> bool:
        """Count a failed login; True when it just put the client in its cooldown."""
        now = self._clock()
        net = self._networks.setdefault(network_of(ip), _Failures())
        net.times = [*self._recent(net), now]
        acct = self._accounts.setdefault(account.lower()[:320], _Failures())
        acct.times = [*self._recent(acct), now][-64:]
        started = False
        if len(net.times) >= self.limits.max_failures_per_ip and net.blocked_until <= now:
            net.blocked_until = now + self.limits.cooldown_minutes * 60
            net.times = []
            started = True
        self._save()
        return started

    def succeeded(self, ip: str, account: str) -> None:
        """A good login clears the account's failures (not the network's)."""
        if self._accounts.pop(account.lower(), None) is not None:
            self._save()

    def _recent(self, entry: _Failures) -> list[float]:
        since = self._clock() - self.limits.window_minutes * 60
        return [t for t in entry.times if t > since]

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
            while len(table) > MAX_ENTRIES:
                del table[next(iter(table))]

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
        except (ValueError, OSError, AttributeError, TypeError) as exc:
            log.warning("auth throttle-state-unreadable path=%s why=%s", self.path, exc)
            self._networks.clear()
            self._accounts.clear()
        self._prune()

    def _save(self) -> None:
        self._prune()
        if self.path is None:
            return
        data = {
            name: {
                k: {"times": v.times, "blocked_until": v.blocked_until} for k, v in table.items()
            }
            for name, table in (("networks", self._networks), ("accounts", self._accounts))
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError as exc:
            # Losing the file only forgets failures; the in-memory counts still hold.
            log.warning("auth throttle-state-unwritable path=%s why=%s", self.path, exc)
