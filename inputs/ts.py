"""MistInTS: MPEG-TS files (``/*.ts``, ``/*.m2ts``).

A frame is spread over many 188-byte packets (and may share a PES with other audio
frames), so the index records the byte position of the PES it came out of plus its
ordinal among the frames of that PES (``aux``). A page load restarts the demuxer
(:meth:`TsDemuxer.seek`) one PES of the track earlier -- so an audio frame that began
in the previous PES comes out the same as while indexing -- and keeps the frames
whose (position, ordinal) the page names.
"""

from __future__ import annotations

import os

from common.errors import UsageError
from inputs.base import FrameLoader, Progress, VodFormat
from inputs.cli import make_main, vod_capabilities
from inputs.index import MediaIndex, TrackIndex
from inputs.seq import demux_file, summarise
from mistcodecs.errors import FormatError
from mistcodecs.ts.demux import TsDemuxer
from shm.model import Packet, TrackMeta

CAPS = vod_capabilities("TS", "MPEG-TS file input", ["/*.ts", "/*.m2ts"], 9)
CHUNK = 188 * 1024
M2TS = 192  # Blu-ray transport streams: a 4-byte arrival time before every packet
OVERRUN = 32 * 1024 * 1024  # give up this far past the last position a page needs


class PacketFile:
    """Reads 188-byte packets by their position in the packet stream, hiding the
    4-byte prefixes of M2TS files (positions in the index are packet-stream bytes)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        head = os.pread(self.fd, 3 * M2TS, 0)
        sync = (
            len(head) > M2TS + 4 and head[4] == 0x47 and head[M2TS + 4] == 0x47 and head[0] != 0x47
        )
        self.packet = M2TS if sync else 188

    def read(self, pos: int, size: int) -> bytes:
        if self.packet == 188:
            return os.pread(self.fd, size, pos)
        first, count = pos // 188, -(-size // 188)
        raw = os.pread(self.fd, count * M2TS, first * M2TS)
        view = memoryview(raw)
        return b"".join(view[i + 4 : i + M2TS] for i in range(0, len(raw) - 4, M2TS))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Ordinals:
    """Numbers frames of one track that share a PES position."""

    def __init__(self) -> None:
        self.last: dict[int, tuple[int, int]] = {}

    def next(self, track: int, pos: int) -> int:
        prev, k = self.last.get(track, (-1, -1))
        k = k + 1 if prev == pos else 0
        self.last[track] = (pos, k)
        return k


class TsFormat(VodFormat):
    name = "TS"

    def build_index(self, path: str, size: int, progress: Progress) -> MediaIndex:
        demux = TsDemuxer()
        tracks: dict[int, TrackMeta] = {}
        frames: dict[int, TrackIndex] = {}
        ordinals = _Ordinals()
        changed: set[int] = set()

        def take(events: list[TrackMeta | Packet], positions: list[int]) -> None:
            for ev, pos in zip(events, positions, strict=True):
                if isinstance(ev, TrackMeta):
                    if ev.id in tracks:
                        changed.add(ev.id)
                    else:
                        tracks[ev.id] = ev
                        frames[ev.id] = TrackIndex()
                    continue
                k = ordinals.next(ev.track, pos)
                n = len(ev.data)
                frames[ev.track].append(ev.dts, ev.offset, n, ev.keyframe, pos, n, k)

        def feed_all() -> None:
            src = PacketFile(path)
            try:
                pos = 0
                while data := src.read(pos, CHUNK):
                    take(demux.feed(data), demux.positions)
                    pos += len(data)
                    progress(min(size, pos * src.packet // 188), size)
            finally:
                src.close()

        def end() -> None:
            take(demux.end(), demux.positions)

        warnings = demux_file(feed_all, end, frames, "MPEG-TS")
        if not tracks and not warnings:
            raise FormatError("no supported elementary stream found (no PAT/PMT or codecs)")
        warnings += summarise(demux.problems, "MPEG-TS")
        if demux.dropped:
            warnings.append(f"{demux.dropped} frames before their codec config were dropped")
        warnings += [f"track {t}: codec config changed mid-file" for t in sorted(changed)]
        return MediaIndex(self.name, [tracks[t] for t in sorted(tracks)], frames, warnings)

    def open_loader(self, path: str, index: MediaIndex) -> FrameLoader:
        return TsLoader(path)


class TsLoader(FrameLoader):
    def __init__(self, path: str) -> None:
        self.src = PacketFile(path)
        self.demux = TsDemuxer()
        self._primed = False

    def _prime(self) -> None:
        """Learn the PIDs and codec configs again (they live at the start of the file)."""
        pos = 0
        while pos < 8 * 1024 * 1024:
            data = self.src.read(pos, CHUNK)
            if not data:
                break
            self.demux.feed(data)
            pos += len(data)
            if self.demux.tracks:
                break
        self._primed = True

    def load(self, track: int, frames: TrackIndex, start: int, stop: int) -> list[bytes]:
        if not self._primed:
            self._prime()
        want = {(frames.pos[n], frames.aux[n]): n - start for n in range(start, stop)}
        first = frames.pos[start]
        seek = first
        for n in range(start - 1, -1, -1):  # one PES of this track earlier
            if frames.pos[n] < first:
                seek = frames.pos[n]
                break
        limit = max(p for p, _ in want) + OVERRUN
        out: list[bytes | None] = [None] * (stop - start)
        left = len(want)
        ordinals = _Ordinals()
        demux = self.demux
        demux.seek(seek)
        pos = seek
        while left:
            data = self.src.read(pos, CHUNK) if pos < limit else b""
            events = demux.feed(data) if data else demux.end()
            for ev, at in zip(events, demux.positions, strict=True):
                if isinstance(ev, Packet) and ev.track == track:
                    i = want.get((at, ordinals.next(track, at)))
                    if i is not None and out[i] is None:
                        out[i] = bytes(ev.data)
                        left -= 1
            if not data:
                break
            pos += len(data)
        if left:
            raise FormatError(f"track {track}: {left} frames not found again after byte {seek}")
        if any(o is None for o in out):
            raise UsageError("TS loader lost a frame")
        return [o for o in out if o is not None]

    def close(self) -> None:
        self.src.close()


main = make_main(CAPS, TsFormat)

if __name__ == "__main__":
    main()
