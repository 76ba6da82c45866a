"""RTMP as a format of the live fan-out (:mod:`outputs.fanout`).

The fan-out muxes once per (stream, format, tracks) and writes the same bytes to every
viewer. For RTMP the bytes depend on the message stream id and the chunk size, so the
"format" is per message stream id and every connection uses :data:`CHUNK_SIZE`
(announced in ``accept_connect``). Each message is chunked once with full (type 0)
headers (:func:`~mistcodecs.rtmp.prepare_media`), so it does not depend on what else the
viewer was sent; the connection's own chunk writer forgets those chunk streams.
"""

from __future__ import annotations

from functools import lru_cache

from mistcodecs.flv import TAG_AUDIO, TAG_VIDEO, FlvMuxer
from mistcodecs.rtmp import prepare_media
from outputs.formats import REGISTRY, FormatSpec, Muxer
from shm.model import Packet, TrackMeta

CHUNK_SIZE = 4096
CS_AUDIO, CS_DATA, CS_VIDEO = 4, 5, 6  # the chunk streams prepare_media uses


class RtmpLiveMuxer:
    """``header()/packet()/end()`` producing pre-chunked RTMP messages."""

    def __init__(self, tracks: list[TrackMeta], stream_id: int, chunk_size: int = CHUNK_SIZE):
        self.flv = FlvMuxer(tracks)
        self.stream_id = stream_id
        self.chunk_size = chunk_size

    def header(self) -> bytes:
        sid, cs = self.stream_id, self.chunk_size
        parts = [prepare_media("data", sid, 0, self.flv.metadata_body(), cs)]
        for tag_type, body in self.flv.sequence_bodies():
            kind = "video" if tag_type == TAG_VIDEO else "audio"
            parts.append(prepare_media(kind, sid, 0, body, cs))
        return b"".join(parts)

    def packet(self, p: Packet) -> bytes:
        made = self.flv.body_parts(p)
        if made is None:
            return b""
        tag_type, head, data = made
        kind = "video" if tag_type == TAG_VIDEO else "audio" if tag_type == TAG_AUDIO else "data"
        return prepare_media(kind, self.stream_id, max(p.dts, 0), data, self.chunk_size, head)

    def end(self) -> bytes:
        return b""


@lru_cache(maxsize=64)
def rtmp_spec(stream_id: int) -> FormatSpec:
    """The fan-out format for viewers playing on message stream ``stream_id``."""
    flv = REGISTRY.formats["flv"]

    def build(tracks: list[TrackMeta], live: bool) -> Muxer:
        return RtmpLiveMuxer(tracks, stream_id)

    return FormatSpec(
        f"rtmp-{stream_id}", (), "", "flash/10", "RTMP", 10, flv.video, flv.audio, build,
        connector="RTMP",
    )  # fmt: skip
