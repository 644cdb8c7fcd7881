"""The one exception type that carries a user-facing, one-line message."""

from __future__ import annotations

from pathlib import Path


class RecsysError(Exception):
    """A bad input, reported as one line that names the file, the field and what was expected.

    The command-line interface prints ``str(error)`` and exits with status 2; library callers can
    catch it like any other exception.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None):
        prefix = ""
        if path is not None:
            prefix += f"{path}: "
        if field is not None:
            prefix += f"{field}: "
        self.message = " ".join(message.split())
        super().__init__(prefix + self.message)
        self.path = None if path is None else Path(path)
        self.field = field


class DataError(RecsysError, ValueError):
    """Interaction data or its settings are not what the tool expects."""


class CheckpointError(RecsysError):
    """A checkpoint is missing, truncated, already exists, or does not match the data."""
