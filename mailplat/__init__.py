"""mailplat: a mail platform whose whole configuration is code."""

__version__ = "0.1.0"
