"""MistInFLV: FLV files (``/*.flv``).

Indexing demuxes the tags once; each frame's payload is the tail of its tag body, so
the index records where that tail starts and a page load reads it back directly.
PCM (little-endian or 8-bit unsigned in FLV) is converted on load as the demuxer does.
"""

from __future__ import annotations

from inputs.base import FrameLoader, PositionLoader, Progress, VodFormat, feed_file
from inputs.cli import make_main, vod_capabilities
from inputs.index import MediaIndex, TrackIndex
from inputs.mp4 import swap_pcm
from inputs.seq import demux_file
from mistcodecs.flv import FlvTag, FlvTagDecoder, FlvTagReader
from shm.model import Packet, TrackMeta

CAPS = vod_capabilities("FLV", "FLV file input", ["/*.flv"], 9)
TAG_HEAD = 11


def pcm_to_be(data: memoryview, bits: int) -> bytes:
    """FLV PCM: 16-bit little-endian, 8-bit unsigned -> big-endian signed."""
    if bits == 8:
        return bytes(b ^ 0x80 for b in data)
    return swap_pcm(data, 16)


class FlvFormat(VodFormat):
    name = "FLV"

    def build_index(self, path: str, size: int, progress: Progress) -> MediaIndex:
        reader = FlvTagReader()
        decoder = FlvTagDecoder()
        tracks: dict[int, TrackMeta] = {}
        frames: dict[int, TrackIndex] = {}
        changed: set[int] = set()

        def feed(data: bytes, _pos: int) -> None:
            for item in reader.feed(data):
                if isinstance(item, FlvTag):
                    self._tag(item, decoder, tracks, frames, changed)

        warnings = demux_file(
            lambda: feed_file(path, size, progress, feed), reader.end, frames, "FLV"
        )
        if decoder.dropped:
            warnings.append(f"{decoder.dropped} frames before their codec config were dropped")
        warnings += [f"track {t}: codec config changed mid-file" for t in sorted(changed)]
        return MediaIndex(self.name, list(tracks.values()), frames, warnings)

    @staticmethod
    def _tag(
        tag: FlvTag,
        decoder: FlvTagDecoder,
        tracks: dict[int, TrackMeta],
        frames: dict[int, TrackIndex],
        changed: set[int],
    ) -> None:
        body_end = tag.offset + TAG_HEAD + len(tag.body)
        for ev in decoder.tag(tag):
            if isinstance(ev, TrackMeta):
                if ev.id in tracks:
                    changed.add(ev.id)  # keep the first config: the index has one init
                    continue
                tracks[ev.id] = ev
                frames[ev.id] = TrackIndex()
                continue
            assert isinstance(ev, Packet)
            size = len(ev.data)
            meta = tracks[ev.track]
            if meta.codec == "PCM":
                pos, bits = tag.offset + TAG_HEAD + 1, meta.size or 16
            else:
                pos, bits = body_end - size, 0
            frames[ev.track].append(ev.dts, ev.offset, size, ev.keyframe, pos, size, bits)

    def open_loader(self, path: str, index: MediaIndex) -> FrameLoader:
        def transform(_track: int, data: memoryview, aux: int, _pos: int) -> memoryview | bytes:
            return pcm_to_be(data, aux) if aux else data

        return PositionLoader(path, transform)


main = make_main(CAPS, FlvFormat)

if __name__ == "__main__":
    main()
