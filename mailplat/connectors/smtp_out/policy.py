"""The retry policy of outbound mail, pure: when to try again, when to give up, when to warn.

Input: the site's Delivery settings, a record's envelope (arrival time,
attempts made, meta) and the clock's now. Output: plain decisions; nothing
here touches the spool or the network, so the ladder is easy to test.
- Delays: retry_minutes[0] after the first failed attempt, [1] after the
  second, [2] after the third, and the last entry after every later one.
- Give up when the message has been queued for lifetime_hours, or when
  max_retries retries (attempts after the first) have failed.
- Delay notices: never for mode off; for mode first, once per message; for
  mode each, at every deferral; in both only once the message is
  after_minutes old.
"""

from __future__ import annotations

from mailplat.config.models.site import Delivery
from mailplat.core.envelope import Envelope

DELAY_NOTIFIED = "delay-notified"


def retry_delay(delivery: Delivery, attempts: int) -> float:
    """Seconds to wait after `attempts` failed attempts (attempts >= 1)."""
    ladder = delivery.retry_minutes
    return 60.0 * ladder[min(max(attempts, 1), len(ladder)) - 1]


def expires_at(delivery: Delivery, env: Envelope) -> float:
    """When the message's lifetime ends (the DSN's Will-Retry-Until)."""
    return env.received_at + delivery.lifetime_hours * 3600.0


def give_up_reason(delivery: Delivery, env: Envelope, attempts: int, now: float) -> str | None:
    """Why a still-deferred message must stop being retried, or None to retry it."""
    if now >= expires_at(delivery, env):
        return f"lifetime of {delivery.lifetime_hours} hours expired after {attempts} attempts"
    if attempts > delivery.max_retries:
        return f"gave up after {attempts} attempts (max_retries {delivery.max_retries})"
    return None


def wants_delay_notice(delivery: Delivery, env: Envelope, now: float) -> bool:
    """True when this deferral should tell the sender (who must not be the null sender)."""
    notices = delivery.delay_notifications
    if notices.mode == "off" or not env.mail_from or delivery.no_ndr:
        return False
    if now - env.received_at < notices.after_minutes * 60.0:
        return False
    return notices.mode == "each" or not env.get(DELAY_NOTIFIED)
