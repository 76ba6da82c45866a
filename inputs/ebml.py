"""MistInEBML: Matroska and WebM files (``/*.mkv``, ``/*.mka``, ``/*.mk3d``, ``/*.mks``,
``/*.webm``).

Indexing demuxes the file once; the demuxer reports the (Simple)Block element and lace
number of every frame, and a page load re-reads those elements and lets the demuxer
rebuild the frame (:meth:`EbmlDemuxer.reload`: lacing, PCM byte order). The reloading
demuxer learns the tracks from the head of the file only.
"""

from __future__ import annotations

import os

from inputs.base import FrameLoader, PositionLoader, Progress, VodFormat, feed_file
from inputs.cli import make_main, vod_capabilities
from inputs.index import MediaIndex, TrackIndex
from inputs.seq import demux_file
from mistcodecs.ebml import BlockPos, EbmlDemuxer
from mistcodecs.errors import FormatError
from shm.model import Packet, TrackMeta

CAPS = vod_capabilities(
    "EBML",
    "Matroska/WebM file input",
    ["/*.mkv", "/*.mka", "/*.mk3d", "/*.mks", "/*.webm"],
    9,
)
HEAD_LIMIT = 16 * 1024 * 1024


class EbmlFormat(VodFormat):
    name = "EBML"

    def build_index(self, path: str, size: int, progress: Progress) -> MediaIndex:
        demux = EbmlDemuxer()
        frames: dict[int, TrackIndex] = {}
        seen = 0

        def take(events: list[TrackMeta | Packet]) -> None:
            nonlocal seen
            for ev in events:
                if isinstance(ev, TrackMeta):
                    continue
                ref = demux.positions[seen]
                seen += 1
                idx = frames.get(ev.track)
                if idx is None:
                    idx = frames[ev.track] = TrackIndex()
                idx.append(
                    ev.dts, ev.offset, len(ev.data), ev.keyframe, ref.pos, ref.size, ref.lace
                )
            if seen > 4096:  # the demuxer keeps every position; we copied them
                del demux.positions[:seen]
                seen = 0

        def feed(data: bytes, _pos: int) -> None:
            take(demux.feed(data))

        def end() -> None:
            take(demux.end())

        warnings = demux_file(
            lambda: feed_file(path, size, progress, feed), end, frames, "Matroska/WebM"
        )
        if not demux.tracks:
            raise FormatError("no Tracks element: not a playable Matroska/WebM file")
        tracks = list(demux.tracks)
        for meta in tracks:
            frames.setdefault(meta.id, TrackIndex())
        warnings += [
            f"track number {n}: unsupported codec {c}, left out"
            for n, c in sorted(demux.unsupported.items())
        ]
        if demux.trailing_bytes:
            warnings.append(f"{demux.trailing_bytes} bytes after the Segment ignored")
        return MediaIndex(self.name, tracks, frames, warnings)

    def open_loader(self, path: str, index: MediaIndex) -> FrameLoader:
        demux = EbmlDemuxer()
        with open(path, "rb") as fh:
            while not demux.tracks and fh.tell() < HEAD_LIMIT:
                data = fh.read(1 << 16)
                if not data:
                    break
                demux.feed(data)
        if not demux.tracks:
            raise FormatError(f"{os.path.basename(path)}: tracks not found again in the file head")

        def transform(track: int, data: memoryview, lace: int, pos: int) -> bytes:
            ref = BlockPos(track, 0, 0, True, pos, len(data), lace)
            return bytes(demux.reload(ref, bytes(data)).data)

        return PositionLoader(path, transform)


main = make_main(CAPS, EbmlFormat)

if __name__ == "__main__":
    main()
