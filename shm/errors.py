"""Errors of the shared-memory bus.

``StreamBusy`` / ``StreamNotFound`` are states of the world a caller handles;
``ShmFormatError`` means a page on the bus does not look like one of ours.
"""

from __future__ import annotations

from common.errors import MediaError, MistError


class ShmError(MistError):
    """Base of the bus's errors."""


class StreamBusy(ShmError):
    """Another live process already writes this stream."""


class StreamNotFound(ShmError):
    """No writer has published this stream on the bus."""


class ShmFormatError(ShmError, MediaError):
    """A shared-memory page has an unexpected size or content."""
