"""Desired (the YAML) versus applied (the last generation): plan, effects, apply, users."""
