"""The SMTP connector's sending side: the "smtp" queue -> remote mail servers."""
