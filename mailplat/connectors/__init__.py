"""Connectors move mail between systems; they meet only through spool queues."""
