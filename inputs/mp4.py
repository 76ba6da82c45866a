"""MistInMP4: MP4/MOV files (``/*.mp4``, ``/*.mov``).

The demuxer's sample tables already hold each sample's file offset and size, so the
index is a copy of those columns -- no payload is read while indexing (a one-hour
file indexes in well under a second). Little-endian PCM (``sowt``/``lpcm``) is
byte-swapped to the media model's big-endian when a page is loaded, and timed text
(``tx3g``) becomes the model's subtitle payloads (cue duration + UTF-8 text).
"""

from __future__ import annotations

import os
from array import array

from inputs.base import FrameLoader, PositionLoader, Progress, VodFormat
from inputs.cli import make_main, vod_capabilities
from inputs.index import MediaIndex, TrackIndex
from mistcodecs.errors import FormatError
from mistcodecs.mp4 import Mp4Demuxer, file_reader, read_header
from mistcodecs.mp4.boxes import ReadAt
from mistcodecs.mp4.demux import swap_pcm
from mistcodecs.mp4.text import tx3g_to_subtitle

CAPS = vod_capabilities("MP4", "MP4/MOV file input", ["/*.mp4", "/*.mov"], 9)
SWAP_PCM = 1  # aux flag: little-endian PCM, swap on load


def valid_prefix(read_at: ReadAt, size: int) -> int:
    """Where the run of well-formed top-level boxes (four printable type characters, sizes
    inside the file) ends."""
    pos = 0
    while pos < size:
        try:
            header = read_header(read_at, pos, size)
        except FormatError:
            break
        if not all(32 <= ord(c) < 127 for c in header.type):
            break
        pos = header.end
    return pos


class Mp4Format(VodFormat):
    name = "MP4"

    def build_index(self, path: str, size: int, progress: Progress) -> MediaIndex:
        with open(path, "rb") as fh:
            read_at = file_reader(fh)
            total = os.fstat(fh.fileno()).st_size
            warnings: list[str] = []
            try:
                demux = Mp4Demuxer(read_at, total)
            except FormatError:
                end = valid_prefix(read_at, total)
                if end in (0, total):
                    raise
                demux = Mp4Demuxer(read_at, end)  # junk after the last good box
                warnings.append(f"{total - end} bytes after the last box at {end} ignored")
            progress(size // 2, size)
            tracks = demux.tracks()
            frames: dict[int, TrackIndex] = {}
            for meta in tracks:
                table = demux.sample_table(meta.id)
                n = len(table)
                sizes, aux = table.size, array("q", [0]) * n
                if demux.pcm_little_endian(meta.id):
                    aux = array("q", [SWAP_PCM]) * n
                elif meta.codec == "subtitle":  # tx3g: aux is the cue duration
                    cues = demux.text_cues(meta.id)
                    sizes, aux = cues.payload_size, cues.duration
                frames[meta.id] = TrackIndex(
                    dts=table.dts,
                    offset=table.offset,
                    size=array("q", sizes),
                    keyframe=bytearray(table.keyframe),
                    pos=table.pos,
                    rsize=array("q", table.size),
                    aux=aux,
                )
        return MediaIndex(self.name, tracks, frames, warnings + list(demux.warnings))

    def open_loader(self, path: str, index: MediaIndex) -> FrameLoader:
        bits = {t.id: t.size for t in index.tracks}
        text = {t.id for t in index.tracks if t.codec == "subtitle"}

        def transform(track: int, data: memoryview, aux: int, _pos: int) -> memoryview | bytes:
            if track in text:
                return tx3g_to_subtitle(data, aux)
            return swap_pcm(data, bits.get(track, 16)) if aux == SWAP_PCM else data

        return PositionLoader(path, transform)


main = make_main(CAPS, Mp4Format)

if __name__ == "__main__":
    main()
