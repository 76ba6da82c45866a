"""MistInFLV: FLV files (``/*.flv``).

Indexing demuxes the tags once; each frame's payload is the tail of its tag body, so
the index records where that tail starts and a page load reads it back directly.
PCM (little-endian or 8-bit unsigned in FLV) is converted on load as the demuxer does.
"""

from __future__ import annotations

from inputs.base import FrameLoader, PositionLoader, Progress, VodFormat
from inputs.cli import make_main, vod_capabilities
from inputs.index import MediaIndex, TrackIndex
from inputs.seq import demux_file
from mistcodecs.errors import Truncated
from mistcodecs.flv import TAG_TYPES, FlvHeader, FlvTag, FlvTagDecoder
from mistcodecs.wav import swap_endian
from shm.model import Packet, TrackMeta

CAPS = vod_capabilities("FLV", "FLV file input", ["/*.flv"], 9)
TAG_HEAD = 11
CHUNK = 256 * 1024


def pcm_to_be(data: memoryview, bits: int) -> bytes:
    """FLV PCM: 16-bit little-endian, 8-bit unsigned -> big-endian signed."""
    return swap_endian(bytes(data), 8 if bits == 8 else 16)


class FlvFormat(VodFormat):
    name = "FLV"

    def build_index(self, path: str, size: int, progress: Progress) -> MediaIndex:
        decoder = FlvTagDecoder()
        tracks: dict[int, TrackMeta] = {}
        frames: dict[int, TrackIndex] = {}
        changed: set[int] = set()

        def feed_all() -> None:
            # Tag by tag (not FlvTagReader.feed, which drops a whole chunk's tags when
            # it meets damage), so everything before the first bad byte is kept.
            with open(path, "rb") as fh:
                head = fh.read(13)
                pos = FlvHeader.parse(head).size + 4
                buf, base = b"", pos
                fh.seek(pos)
                while True:
                    more = fh.read(CHUNK)
                    buf = buf[pos - base :] + more
                    base = pos
                    at = 0
                    while len(buf) - at >= 15:
                        need = 15 + int.from_bytes(buf[at + 1 : at + 4], "big")
                        if (buf[at] & 0x1F) in TAG_TYPES and len(buf) - at < need:
                            break
                        tag = FlvTag.parse(buf, at, base)
                        self._tag(tag, decoder, tracks, frames, changed)
                        at += tag.size
                    pos = base + at
                    progress(min(pos, size), size)
                    if not more:
                        if at < len(buf):
                            raise Truncated(
                                f"FLV tag at byte {pos} truncated ({len(buf) - at} bytes left)"
                            )
                        return

        warnings = demux_file(feed_all, lambda: None, frames, "FLV")
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
