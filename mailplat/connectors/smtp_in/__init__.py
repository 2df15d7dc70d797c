"""SMTP inbound: the wire format, sessions, policy verdicts and listeners (RFC 5321)."""
