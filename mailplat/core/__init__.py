"""Shared vocabulary: addresses, envelopes, replies, errors, ids. Imports nothing else of mailplat."""
