"""Errors shared by all mistpy programs.

``UsageError`` means we (the caller) misused an API; ``MediaError`` and its
subclasses mean the peer or the file is bad and carry a message that says where.
CLI errors carry their exit code.
"""

from __future__ import annotations


class MistError(Exception):
    """Base of every mistpy error."""


class UsageError(MistError):
    """An API was called in a way it does not support (a bug on our side)."""


class MediaError(MistError, ValueError):
    """Malformed media or protocol data from a peer or a file."""


class CliError(MistError):
    """A command-line program must stop with ``exit_code`` and print the message."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
