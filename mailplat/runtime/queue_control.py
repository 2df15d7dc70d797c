"""The control socket's queue commands: list, show, retry, delete, bounce, resend.

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

if TYPE_CHECKING:
    from mailplat.runtime.server import Server

QUEUES = (QUEUE, BADMAIL)


def _queue(request: dict[str, Any]) -> str:
    queue = str(request.get("queue") or QUEUE)
    if queue not in QUEUES:
        raise manage.NotFound(f"no queue {queue!r}; queues are {', '.join(QUEUES)}")
    return queue


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


async def handle(server: Server, request: dict[str, Any]) -> dict[str, Any]:
    cmd = str(request.get("cmd"))
    now = server.outbound.clock.now()
    spool = server.spool
    try:
        if cmd == "queue-list":
            queue = _queue(request)
            items = [e.to_json(now) for e in manage.entries(spool, queue)]
            return {"ok": True, "queue": queue, "now": now, "entries": items}
        if cmd == "queue-show":
            queue = _queue(request)
            rid = _record_id(server, queue, str(request["id"]))
            entry, env, headers = manage.show(spool, queue, rid)
            return {
                "ok": True,
                "entry": entry.to_json(now),
                "meta": dict(env.meta),
                "client_ip": env.client_ip,
                "helo": env.helo,
                "auth": env.auth_login,
                "headers": base64.b64encode(headers).decode(),
            }
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
    except KeyError as exc:
        return {"ok": False, "error": f"missing argument {exc}"}
    return {"ok": False, "error": f"unknown command {cmd!r}"}
