"""The errors bad input raises: a setting (``ConfigError``, re-exported by ``config``) or a checkpoint that
exists but cannot be used (``CheckpointError``, re-exported by ``checkpoint``)."""

__all__ = ["CheckpointError", "ConfigError", "first_line"]


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what would be valid."""


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be used; the message names the file and the problem."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message  # the problem alone, without the file's name


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type when it has none: what a one-line report shows."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
