"""Authentication and authorisation: password hashes, relay decisions, ban state."""
