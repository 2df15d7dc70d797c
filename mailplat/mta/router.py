"""Route one message, pure: (Envelope, Directory) -> queue records, rejects.

Every recipient is expanded (config.expand: groups, redirects, aliases,
catchalls, loop-safe) and each final destination lands in exactly one queue:
  mailbox -> "postoffice" (rcpts are mailbox keys `po/name`)
  list    -> "list"       (rcpts are list addresses)
  remote  -> "smtp"       (rcpts are remote addresses)
A mailbox reached by several recipients gets one copy. Destinations that
cannot be delivered (a group member on our domain that does not exist) come
back as rejects for a bounce; a message with nothing deliverable at all goes
to "badmail", never to nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mailplat.config.directory import Directory
from mailplat.config.expand import Destination, expand
from mailplat.core.address import try_parse
from mailplat.core.envelope import Envelope

POSTOFFICE = "postoffice"
LIST = "list"
SMTP = "smtp"
BADMAIL = "badmail"
QUEUE_OF = {"mailbox": POSTOFFICE, "list": LIST, "remote": SMTP}


@dataclass
class Routing:
    """Where a message goes: one record per queue, plus what must bounce."""

    records: list[tuple[str, Envelope]] = field(default_factory=list)
    rejected: list[Destination] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)


def route(env: Envelope, directory: Directory) -> Routing:
    """Split a message's recipients over the outbound queues."""
    out = Routing()
    targets: dict[str, dict[str, Destination]] = {POSTOFFICE: {}, LIST: {}, SMTP: {}}
    for rcpt in env.rcpts:
        parsed = try_parse(rcpt)
        if parsed is None:
            out.rejected.append(Destination("reject", rcpt, rcpt, "invalid address"))
            continue
        expansion = expand(directory, parsed)
        out.trace += expansion.trace
        for dest in expansion.destinations:
            if dest.kind == "reject":
                out.rejected.append(dest)
            else:
                targets[QUEUE_OF[dest.kind]].setdefault(dest.target, dest)
    for queue, dests in targets.items():
        if not dests:
            continue
        meta = list(env.meta)
        for target, dest in dests.items():
            meta.append((f"orig:{target}", dest.rcpt))
            if dest.catchall:
                meta.append((f"catchall:{target}", dest.rcpt))
        out.records.append((queue, replace(env, rcpts=tuple(dests), meta=tuple(meta))))
    if not out.records and not out.rejected:
        reason = "no deliverable destination (routing loop?)"
        out.records.append((BADMAIL, env.with_meta("badmail", reason)))
    return out
