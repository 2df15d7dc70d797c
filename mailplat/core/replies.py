"""SMTP and POP3 replies as named constants.

SMTP constants are `S<code>_<MEANING>` with the RFC 3463 enhanced code in the
text; a qa test checks that the digits in each name match the code and that
the enhanced code's class matches the reply's first digit. Texts never name
config objects or internal causes.
"""

from __future__ import annotations

# RFC 5321 §4.2 basic replies, RFC 3463 enhanced status codes.
S221_BYE = "221 2.0.0 Bye"
S235_AUTH_OK = "235 2.7.0 Authentication successful"
S250_OK = "250 2.0.0 OK"
S250_SENDER_OK = "250 2.1.0 Sender OK"
S250_RCPT_OK = "250 2.1.5 Recipient OK"
S252_CANNOT_VRFY = "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"
S421_TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
S421_ACCESS_DENIED = "421 4.7.1 Access denied"
S421_TOO_MANY_ERRORS = "421 4.7.0 Too many errors, closing connection"
S421_SHUTTING_DOWN = "421 4.3.2 Service shutting down"
S421_TIMEOUT = "421 4.4.2 Timeout, closing connection"
S451_LOCAL_ERROR = "451 4.3.0 Local error in processing, try again later"
S452_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
S452_MAILBOX_FULL = "452 4.2.2 Mailbox full"
S452_NO_SPACE = "452 4.3.1 Insufficient system storage"
S454_TLS_UNAVAILABLE = "454 4.7.0 TLS not available"
S500_LINE_TOO_LONG = "500 5.5.2 Line too long"
S501_BAD_ADDRESS = "501 5.1.7 Bad address syntax"
S502_NOT_IMPLEMENTED = "502 5.5.1 Command not implemented"
S503_BAD_SEQUENCE = "503 5.5.1 Bad sequence of commands"
S503_TOO_MANY_AUTH = "503 5.7.0 Too many authentication attempts"
S530_AUTH_REQUIRED = "530 5.7.0 Authentication required"
S535_AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
S550_NO_SUCH_USER = "550 5.1.1 No such user here"
S550_MAILBOX_DISABLED = "550 5.2.1 Mailbox disabled"
S550_DOMAIN_DISABLED = "550 5.1.2 Domain not accepting mail"
S550_BLOCKED_ADDRESS = "550 5.7.1 Recipient address blocked"
S550_SENDER_BLACKLISTED = "550 5.7.1 Sender domain refused by recipient domain"
S550_RELAY_DENIED = "550 5.7.1 Relay access denied"
S550_SENDER_NOT_OWNED = "550 5.7.1 Sender address not owned by the authenticated user"
S550_SENDER_DOMAIN_INVALID = "550 5.1.8 Sender domain does not exist"
S550_BARE_LINE_ENDING = "550 5.5.2 Bare CR or LF in message data is not allowed"
S552_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
S553_BAD_MAILBOX = "553 5.1.3 Mailbox name not allowed"
S554_LOOP = "554 5.4.6 Too many hops, mail loop detected"
S554_NO_VALID_RCPTS = "554 5.5.1 No valid recipients"

# RFC 1939, RFC 2449 response codes in brackets.
POP_OK = "+OK"
POP_ERR = "-ERR"
POP_IN_USE = "-ERR [IN-USE] Mailbox is locked by another session"
POP_AUTH_FAILED = "-ERR [AUTH] Authentication failed"
POP_SYS_TEMP = "-ERR [SYS/TEMP] Temporary failure, try again later"
POP_NO_SUCH_MESSAGE = "-ERR No such message"
POP_BAD_COMMAND = "-ERR Unknown command"
POP_BAD_SEQUENCE = "-ERR Command not valid in this state"
POP_LINE_TOO_LONG = "-ERR Line too long"
POP_TLS_REQUIRED = "-ERR [AUTH] Plaintext login not allowed here, use STLS first"
