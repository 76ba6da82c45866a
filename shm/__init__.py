"""The shared-memory media bus: inputs write streams, outputs read them.

See docs/architecture.md for page names, record layouts and the wake-up protocol.
"""

from .errors import ShmError, ShmFormatError, StreamBusy, StreamNotFound
from .meta import StreamMeta
from .reader import StreamReader
from .track import FragmentInfo, KeyInfo, PageInfo, PartInfo
from .writer import StreamWriter

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
