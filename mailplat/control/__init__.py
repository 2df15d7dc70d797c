"""The control socket: how the CLI talks to a running server (apply, status, queues)."""
