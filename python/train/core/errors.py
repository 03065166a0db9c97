"""The error of a configuration key or value."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key, the expected and the received."""
