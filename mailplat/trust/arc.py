"""ARC (RFC 8617): is the chain of seals forwarders put on the message intact?

Input: the message and a Resolver. Output: a Result: pass (every ARC set
validates and the newest message signature too), fail, or none (no ARC
headers), with the domain that sealed last and the instance count. dkimpy
does the cryptography; the keys every ARC-Seal and ARC-Message-Signature
names are fetched first through our Resolver (parallel, cached per TTL), so
dkimpy never queries DNS itself. A forwarder whose seal passes and that the
site trusts (authentication.trusted_arc_sealers) can vouch for a message
its changes broke (a mailing list's subject tag and footer).
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim as dkimpy

from mailplat.dns.resolver import Resolver
from mailplat.trust.dkim import QUIET, KeyCache, key_name, signature_tags
from mailplat.trust.fields import Message, split


@dataclass(frozen=True, slots=True)
class Result:
    result: str  # pass | fail | none
    sealer: str = ""  # d= of the newest ARC-Seal
    instances: int = 0
    reason: str = ""


def _instance(tags: dict[str, str]) -> int:
    text = tags.get("i", "")
    return int(text) if text.isdigit() else 0


async def verify(
    data: bytes,
    resolver: Resolver,
    min_rsa_bits: int = 1024,
    keys: KeyCache | None = None,
    message: Message | None = None,
) -> Result:
    """The chain's verdict; `message` is `data` already split, when the caller has it."""
    message = message or split(data)
    seals = signature_tags(message, "arc-seal")
    if not seals and not message.get_all("arc-message-signature"):
        return Result("none", reason="not ARC sealed")
    signatures = signature_tags(message, "arc-message-signature")
    keys = keys or KeyCache()
    await keys.fetch(
        resolver, (key_name(t) for t in [*seals, *signatures] if t.get("s") and t.get("d"))
    )
    newest = max(seals, key=_instance, default={})
    sealer = newest.get("d", "").lower()
    count = _instance(newest)
    if keys.temporary:
        # A key we could not fetch is no proof of a broken chain: no verdict.
        return Result("none", sealer, count, "DNS failed for an ARC key")
    try:
        cv, _, reason = dkimpy.arc_verify(
            data, logger=QUIET, dnsfunc=keys.dnsfunc, minkey=min_rsa_bits
        )
    except Exception as exc:  # hostile headers: a failed chain, never our crash
        return Result("fail", sealer, count, f"unparsable ARC set: {type(exc).__name__}")
    verdict = {dkimpy.CV_Pass: "pass", dkimpy.CV_None: "none"}.get(cv, "fail")
    text = reason.decode() if isinstance(reason, bytes) else str(reason)
    return Result(verdict, sealer, count, text)
