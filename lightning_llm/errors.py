"""The error a bad setting raises, shared by every module that checks one (and re-exported by ``config``)."""

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what would be valid."""
