"""Logins for every protocol (SMTP AUTH, POP3, IMAP): one path, one set of rules.

Input: a login name, a password, the client IP and the protocol's name; the
current Directory and the shared LoginThrottle. Output: a LoginResult:
OK (with the mailbox), FAILED, THROTTLED (the client network is in its
cooldown: refused without checking the password) or DISABLED (right
password, logon disabled).

Guarantees (RELIABILITY.md guarantee 12):
- guessing is counted across connections and protocols, per client network
  and per account (auth/throttle.py), and a network in its cooldown is
  refused even with the right password; security.ip_whitelist is exempt;
- a known and an unknown account cost the same work: an unknown one is
  checked against a dummy hash (passwords.verify_password), and both wait
  the same account delay; the protocol pads every failure to the same total
  time (security.logins.failed_login_delay_seconds) and says the same words;
- attempts are serialised per client network and per account (KeyedLocks),
  so a burst of parallel guesses is counted one by one: the attempt after
  the limit meets the cooldown, however many were sent at once;
- hashing runs in threads of its own (HASH_THREADS), never on the event
  loop and never in the threads delivery and mailbox reads use, so a
  guessing flood cannot starve mail;
- the throttle's state is saved at most once a second, off the event loop;
- passwords are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mailplat.auth.passwords import verify_password
from mailplat.auth.throttle import LoginThrottle, network_of
from mailplat.config.directory import Directory, MailboxEntry
from mailplat.core.netmatch import ip_matches

log = logging.getLogger("mailplat.auth")

HASH_THREADS = 2
SAVE_EVERY_SECONDS = 1.0


class KeyedLocks:
    """One asyncio lock per key, made on demand and dropped when nobody holds or waits."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Outcome(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    THROTTLED = "throttled"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class LoginResult:
    outcome: Outcome
    entry: MailboxEntry | None = None
    # THROTTLED: seconds until the client may try again.
    retry_after: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


class Logins:
    """Checks logins against the current Directory through the shared throttle."""

    def __init__(self, directory: Callable[[], Directory], throttle: LoginThrottle) -> None:
        self._directory = directory
        self.throttle = throttle
        self._pool = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="auth-hash")
        self._networks = KeyedLocks()
        self._accounts = KeyedLocks()
        self._saved = 0.0

    def failure_delay(self) -> float:
        """How long every failed login takes in total, whatever failed."""
        return float(self._directory().site.security.logins.failed_login_delay_seconds)

    async def check(self, login: str, password: str, ip: str, protocol: str) -> LoginResult:
        """Verify one login; see the module docstring for the rules."""
        try:
            async with self._networks.hold(network_of(ip)):
                return await self._check(login, password, ip, protocol)
        finally:
            await self._save_soon()

    async def _save_soon(self) -> None:
        now = time.monotonic()
        if self.throttle.dirty and now - self._saved >= SAVE_EVERY_SECONDS:
            self._saved = now
            data = self.throttle.snapshot()
            await asyncio.get_running_loop().run_in_executor(self._pool, self.throttle.write, data)

    def close(self) -> None:
        """Save what changed (blocking) and stop the hashing threads."""
        if self.throttle.dirty:
            self.throttle.save()
        self._pool.shutdown(wait=False)

    async def _check(self, login: str, password: str, ip: str, protocol: str) -> LoginResult:
        directory = self._directory()
        exempt = ip_matches(ip, directory.site.security.ip_whitelist)
        if not exempt:
            left = self.throttle.cooldown(ip)
            if left > 0:
                log.info(
                    "auth login-throttled protocol=%s peer=%s retry_after=%d",
                    protocol,
                    ip,
                    left,
                )
                return LoginResult(Outcome.THROTTLED, retry_after=left)
        entry = directory.mailbox_for_login(login)
        account = entry.key if entry is not None else login.strip().lower()
        async with self._accounts.hold(account):
            return await self._verify(login, password, ip, protocol, entry, account, exempt)

    async def _verify(
        self,
        login: str,
        password: str,
        ip: str,
        protocol: str,
        entry: MailboxEntry | None,
        account: str,
        exempt: bool,
    ) -> LoginResult:
        if not exempt:
            wait = self.throttle.account_delay(account, ip)
            if wait > 0:
                await asyncio.sleep(wait)
        stored = entry.model.password if entry is not None else None
        loop = asyncio.get_running_loop()
        good = await loop.run_in_executor(self._pool, verify_password, stored, password)
        if not good:
            started = False if exempt else self.throttle.failed(ip, account)
            log.info(
                "auth login-failed protocol=%s peer=%s user=%r",
                protocol,
                ip,
                login[:100],
            )
            if started:
                log.warning(
                    "auth cooldown protocol=%s peer=%s minutes=%d",
                    protocol,
                    ip,
                    self.throttle.limits.cooldown_minutes,
                )
            return LoginResult(Outcome.FAILED)
        assert entry is not None  # a dummy-hash check never succeeds
        self.throttle.succeeded(ip, account)
        if entry.model.logon_disabled:
            log.info("auth login-disabled protocol=%s peer=%s mailbox=%s", protocol, ip, entry.key)
            return LoginResult(Outcome.DISABLED, entry)
        return LoginResult(Outcome.OK, entry)
