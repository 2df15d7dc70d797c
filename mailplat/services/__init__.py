"""Services let clients read mail: POP3 (IMAP later)."""
