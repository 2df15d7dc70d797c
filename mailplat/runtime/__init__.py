"""The running process: wires config, spool, MTA, connectors and services together."""
