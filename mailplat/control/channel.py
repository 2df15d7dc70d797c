"""A Unix socket speaking one JSON request and one JSON reply per connection.

The socket lives at <data root>/state/control.sock with owner-only
permissions (0600 in a 0700 directory): whoever can use it can reconfigure
the server, so it is exactly as private as the data root. The server side is
asyncio; the client side is plain blocking sockets so any CLI command can use
it without an event loop.

Request: {"cmd": "<name>", ...}. Reply: {"ok": true|false, ...}; an error
reply carries "error" (a sentence for the admin) and, for a refused config,
"errors" (every diagnostic as file:line:col text).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("mailplat.control")

MAX_REQUEST = 1 << 20
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlUnavailable(Exception):
    """No server is listening on the control socket."""


def socket_path(data_root: Path) -> Path:
    return data_root / "state" / "control.sock"


async def serve(path: Path, handler: Handler) -> asyncio.Server:
    """Listen on path; each connection sends one request line and gets one reply line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket from a crashed server

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("request must be a JSON object")
            except ValueError as exc:
                reply: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}"}
            else:
                try:
                    reply = await handler(request)
                except Exception as exc:  # the CLI gets a sentence, the log the traceback
                    log.exception("control request failed cmd=%s", request.get("cmd"))
                    reply = {"ok": False, "error": f"internal error: {exc}"}
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.info("control connection dropped why=%s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_connect, str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    log.info("control listening path=%s", path)
    return server


def call(path: Path, request: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
    """Send one request to a running server; ControlUnavailable when none answers."""
    if not path.exists():
        raise ControlUnavailable(str(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise ControlUnavailable(str(path)) from exc
        sock.sendall(json.dumps(request).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise ControlUnavailable(f"{path}: the server closed the connection without answering")
    reply = json.loads(raw)
    assert isinstance(reply, dict)
    return reply
