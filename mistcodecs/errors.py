"""Errors of the codecs: the data is bad (``FormatError``) or it ended early (``Truncated``)."""

from __future__ import annotations

from common.errors import MediaError


class FormatError(MediaError):
    """The bytes do not follow the format; the message says what and where."""


class Truncated(FormatError):
    """The data ended in the middle of a structure."""
