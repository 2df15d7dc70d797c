"""The control socket's queue commands: list, show, retry, delete, bounce, resend, quarantine.

Input: a request from `mailplat queue ...` / `mailplat badmail ...` and the
running Server. Output: a JSON-ready reply. The work itself is in
connectors.smtp_out.manage; this module only checks arguments, picks the
queue, turns errors into replies and wakes the outbound worker after
changes so they take effect at once.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from mailplat.connectors.smtp_out import manage
from mailplat.connectors.smtp_out.deliver import BADMAIL, QUEUE
from mailplat.spool import history
from mailplat.spool.queue import Damaged

if TYPE_CHECKING:
    from mailplat.runtime.server import Server

# The queues mail waits in (outbound, the list server's, local delivery) and badmail.
LIVE = (QUEUE, "list", "postoffice")
QUEUES = (*LIVE, BADMAIL)
ALL = "all"


def _queue(request: dict[str, Any]) -> str:
    queue = str(request.get("queue") or QUEUE)
    if queue not in QUEUES:
        raise manage.NotFound(f"no queue {queue!r}; queues are {', '.join(QUEUES)}")
    return queue


def _queues(request: dict[str, Any]) -> tuple[str, ...]:
    """The queues a list or show looks in: one named, or every live queue for "all"/none."""
    given = request.get("queue")
    if given in (None, "", ALL):
        return LIVE
    return (_queue(request),)


def _find(server: Server, queues: tuple[str, ...], given: str) -> tuple[str, str]:
    """(queue, record id) of what an admin typed, looking in each queue in turn."""
    for queue in queues:
        rid = _record_id(server, queue, given)
        if rid in server.spool.records(queue):
            return queue, rid
    where = queues[0] if len(queues) == 1 else ", ".join(queues)
    raise manage.NotFound(f"no message {given} in queue {where}")


def _record_id(server: Server, queue: str, given: str) -> str:
    """The record id for what an admin typed: a record id, or the id SMTP answered
    with ("queued as ...") when that message has exactly one record in the queue."""
    records = server.spool.records(queue)
    if given in records or "." in given:
        return given
    matches = [r for r in records if r.startswith(given + ".")]
    if len(matches) > 1:
        raise manage.NotFound(
            f"message {given} has {len(matches)} records in {queue}: {', '.join(sorted(matches))}"
        )
    return matches[0] if matches else given


def _quarantine_show(server: Server, given: str) -> list[dict[str, Any]]:
    """The entries an admin named: one by its name, or every file of a message id."""
    spool = server.spool
    names = [
        str(e["name"])
        for e in spool.quarantined()
        if given in (e.get("name"), e.get("id"), e.get("record"))
    ]
    if not names:
        raise manage.NotFound(f"nothing named {given} in quarantine")
    shown = []
    for name in names:
        info, content = spool.quarantine_entry(name)
        shown.append({**info, "content": base64.b64encode(content).decode()})
    return shown


async def handle(server: Server, request: dict[str, Any]) -> dict[str, Any]:
    cmd = str(request.get("cmd"))
    now = server.outbound.clock.now()
    spool = server.spool
    try:
        if cmd == "queue-list":
            queues = LIVE if request.get("queue") == ALL else (_queue(request),)
            found = [e for q in queues for e in manage.entries(spool, q)]
            found.sort(key=lambda e: (e.received_at, e.id))
            items = [e.to_json(now) for e in found]
            shown = ALL if len(queues) > 1 else queues[0]
            return {"ok": True, "queue": shown, "now": now, "entries": items}
        if cmd == "queue-show":
            queue, rid = _find(server, _queues(request), str(request["id"]))
            entry, env, headers = manage.show(spool, queue, rid)
            return {
                "ok": True,
                "entry": entry.to_json(now),
                "history": history.attempts(env),
                "meta": {k: v for k, v in env.meta if not k.startswith(history.PREFIX)},
                "client_ip": env.client_ip,
                "helo": env.helo,
                "auth": env.auth_login,
                "headers": base64.b64encode(headers).decode(),
            }
        if cmd == "queue-quarantine":
            return {"ok": True, "now": now, "entries": spool.quarantined()}
        if cmd == "queue-quarantine-show":
            return {"ok": True, "entries": _quarantine_show(server, str(request["id"]))}
        if cmd == "queue-retry":
            ids = (
                None
                if request.get("all")
                else [_record_id(server, QUEUE, str(i)) for i in request.get("ids", [])]
            )
            done = await manage.retry(spool, ids, now)
            server.outbound.kick()
            return {"ok": True, "retried": done}
        if cmd == "queue-delete":
            queue = _queue(request)
            rid = _record_id(server, queue, str(request["id"]))
            where = await manage.delete(spool, queue, rid, now)
            return {"ok": True, "id": request["id"], "result": where}
        if cmd == "queue-bounce":
            rid = _record_id(server, QUEUE, str(request["id"]))
            where = await manage.bounce(spool, server.directory, server.accept, rid, now)
            return {"ok": True, "id": request["id"], "result": where}
        if cmd == "badmail-resend":
            rid = _record_id(server, BADMAIL, str(request["id"]))
            where = await manage.resend(spool, rid, server.accept, now)
            server.outbound.kick()
            return {"ok": True, "id": request["id"], "result": where}
    except (manage.NotFound, manage.Busy) as exc:
        return {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
    except Damaged as exc:
        return {
            "ok": False,
            "error": f"{exc}; it is quarantined at its next delivery attempt",
        }
    except KeyError as exc:
        return {"ok": False, "error": f"missing argument {exc}"}
    return {"ok": False, "error": f"unknown command {cmd!r}"}
