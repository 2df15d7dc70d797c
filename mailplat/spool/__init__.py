"""The durable spool: accepted messages and their queue records, crash-safe."""
