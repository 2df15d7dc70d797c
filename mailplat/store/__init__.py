"""Mailbox storage: Maildir files, quota accounting, safe mailbox paths."""
