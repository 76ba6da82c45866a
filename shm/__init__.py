"""The shared-memory media bus: inputs write streams, outputs read them.

See docs/architecture.md for page names, record layouts and the wake-up protocol.

``StreamReader`` is imported on first use: it pulls in asyncio, which a writer-only
process (a ``MistInBuffer`` per live stream) never needs.
"""

from typing import TYPE_CHECKING, Any

from .errors import ShmError, ShmFormatError, StreamBusy, StreamNotFound
from .meta import StreamMeta
from .track import FragmentInfo, KeyInfo, PageInfo, PartInfo
from .writer import StreamWriter

if TYPE_CHECKING:
    from .reader import StreamReader


def __getattr__(name: str) -> Any:
    if name == "StreamReader":
        from .reader import StreamReader

        return StreamReader
    raise AttributeError(f"module 'shm' has no attribute {name!r}")


__all__ = [
    "FragmentInfo",
    "KeyInfo",
    "PageInfo",
    "PartInfo",
    "ShmError",
    "ShmFormatError",
    "StreamBusy",
    "StreamMeta",
    "StreamNotFound",
    "StreamReader",
    "StreamWriter",
]
