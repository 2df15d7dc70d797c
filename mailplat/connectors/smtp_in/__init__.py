"""SMTP inbound: aiosmtpd sessions, policy verdicts, listeners."""
