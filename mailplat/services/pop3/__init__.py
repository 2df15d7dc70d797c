"""The POP3 service (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH PLAIN).

protocol.py frames and parses (sans I/O), session.py is the state machine,
listener.py is the asyncio glue. mailplat wires a real Pop3Backend in runtime.
"""

from mailplat.services.pop3.listener import Pop3Server
from mailplat.services.pop3.session import (
    LoginDisabled,
    LoginThrottled,
    MailboxHandle,
    MailboxLocks,
    Pop3Backend,
    Pop3Options,
)

__all__ = [
    "LoginDisabled",
    "LoginThrottled",
    "MailboxHandle",
    "MailboxLocks",
    "Pop3Backend",
    "Pop3Options",
    "Pop3Server",
]
