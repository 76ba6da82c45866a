"""MistInAV: any other file FFmpeg reads (``/*``, priority 1), through PyAV.

Indexing demuxes the file once with PyAV and converts every packet to the media
model (:mod:`inputs.avconv`). Positions: FFmpeg's byte positions are not usable for
every container (frames may be split, ``pos`` may be -1), so each frame's ``aux`` is
its raw decode timestamp in the stream's time base and a page load *seeks* with PyAV
to just before the page's first frame, then demuxes forward matching timestamps (a
page that follows the previous one continues without seeking). Should the seek land
past the frame, the loader demuxes from the start instead: slower, never wrong.
PyAV runs in this (blocking) process only; there is no event loop to stall.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av

from inputs.avconv import Converter, converter_for, track_meta
from inputs.base import FrameLoader, Progress, SourceError, VodFormat
from inputs.cli import make_main, vod_capabilities
from inputs.index import MediaIndex, TrackIndex
from mistcodecs.errors import FormatError
from shm.model import TrackMeta

CAPS = vod_capabilities("AV", "Generic file input through FFmpeg (PyAV)", ["/*"], 1)
NO_TIME = -(1 << 62)
SEEK_BACK_S = 1.0


def _raw_time(pkt: Any, last: int) -> int:
    if pkt.dts is not None:
        return int(pkt.dts)
    if pkt.pts is not None:
        return int(pkt.pts)
    return last


def _duration_ms(pkt: Any, time_base: Any) -> int:
    return round(pkt.duration * time_base * 1000) if pkt.duration else 0


def _open(path: str) -> Any:
    try:
        return av.open(path)
    except av.FFmpegError as exc:
        raise SourceError(f"FFmpeg cannot read it: {exc}") from exc


def _streams(container: Any) -> tuple[list[tuple[Any, Converter]], list[str]]:
    """Usable streams (with converters) and warnings about the others."""
    usable, warnings = [], []
    for s in container.streams:
        if s.type not in ("video", "audio", "subtitle"):
            continue
        conv = converter_for(s)
        if conv is None:
            warnings.append(f"stream {s.index}: unsupported codec {s.codec_context.name}, left out")
            continue
        usable.append((s, conv))
    return usable, warnings


class AvFormat(VodFormat):
    name = "AV"

    def build_index(self, path: str, size: int, progress: Progress) -> MediaIndex:
        container = _open(path)
        try:
            return self._index(container, size, progress)
        finally:
            container.close()

    def _index(self, container: Any, size: int, progress: Progress) -> MediaIndex:
        usable, warnings = _streams(container)
        if not usable:
            why = "; ".join(warnings) or "no audio or video stream"
            raise SourceError(f"nothing playable: {why}")
        by_index: dict[int, tuple[int, Any, Converter]] = {}
        tracks: list[TrackMeta] = []
        frames: dict[int, TrackIndex] = {}
        for tid, (s, conv) in enumerate(usable, start=1):
            by_index[s.index] = (tid, s, conv)
            frames[tid] = TrackIndex()
        last: dict[int, int] = {}
        count = 0
        try:
            for pkt in container.demux([s for s, _ in usable]):
                if pkt.size == 0:
                    continue  # the flush packet
                tid, s, conv = by_index[pkt.stream.index]
                raw = _raw_time(pkt, last.get(tid, NO_TIME))
                if raw == NO_TIME:
                    continue  # no time at all before the first timed packet: unusable
                last[tid] = raw
                tb = s.time_base
                data = bytes(pkt)
                conv.learn(data)
                payload = conv.payload(data, _duration_ms(pkt, tb))
                dts = round(raw * tb * 1000)
                pts = round(pkt.pts * tb * 1000) if pkt.pts is not None else dts
                key = bool(pkt.is_keyframe) or conv.kind != "video"
                frames[tid].append(dts, pts - dts, len(payload), key, pkt.pos or -1, pkt.size, raw)
                count += 1
                if not count & 255 and pkt.pos and pkt.pos > 0:
                    progress(min(pkt.pos, size), size)
        except (av.FFmpegError, FormatError) as exc:
            if not count:
                raise SourceError(f"FFmpeg cannot demux it: {exc}") from exc
            warnings.append(f"damaged or truncated: {exc}; serving the {count} frames before it")
        warnings += _shortfall(container, usable, frames)
        for tid, (s, conv) in enumerate(usable, start=1):
            meta = track_meta(tid, s, conv)
            conv.finish(meta)
            tracks.append(meta)
        return MediaIndex(self.name, tracks, frames, warnings)

    def open_loader(self, path: str, index: MediaIndex) -> FrameLoader:
        return AvLoader(path)


def _shortfall(
    container: Any, usable: list[tuple[Any, Converter]], frames: dict[int, TrackIndex]
) -> list[str]:
    """FFmpeg ends quietly at a cut: compare with what the headers promised."""
    out = []
    for tid, (s, _) in enumerate(usable, start=1):
        have, promised = len(frames[tid]), int(s.frames or 0)
        if promised and have < promised * 98 // 100:
            out.append(f"stream {s.index}: {have} of {promised} frames present (truncated?)")
    if not out and container.duration and any(len(f) for f in frames.values()):
        declared = container.duration / 1000  # AV_TIME_BASE (us) -> ms
        start = min(f.dts[0] for f in frames.values() if len(f))
        end = max(f.dts[-1] for f in frames.values() if len(f))
        if end - start < declared * 0.9 - 1000:
            out.append(
                f"media ends after {end - start} ms of {declared:.0f} ms declared (truncated?)"
            )
    return out


@dataclass
class _Cursor:
    container: Any
    stream: Any
    conv: Converter
    packets: Iterator[Any]
    next_n: int  # index number of the frame ``packets`` yields next (-1: unknown)


class AvLoader(FrameLoader):
    def __init__(self, path: str) -> None:
        self.path = path
        self.cursors: dict[int, _Cursor] = {}

    def _fresh(self, track: int) -> _Cursor:
        old = self.cursors.pop(track, None)
        if old is not None:
            old.container.close()
        container = _open(self.path)
        usable, _ = _streams(container)
        if track > len(usable):
            container.close()
            raise FormatError(f"track {track} not found again in {self.path}")
        stream, conv = usable[track - 1]
        cur = _Cursor(container, stream, conv, self._iter(container, stream), 0)
        self.cursors[track] = cur
        return cur

    @staticmethod
    def _iter(container: Any, stream: Any) -> Iterator[Any]:
        last = NO_TIME
        for pkt in container.demux(stream):
            if pkt.size == 0:
                continue
            raw = _raw_time(pkt, last)
            if raw == NO_TIME:
                continue
            last = raw
            yield raw, pkt

    def _skip_to(self, cur: _Cursor, frames: TrackIndex, start: int, from_n: int | None) -> bool:
        """Advance ``cur`` so it yields frame ``start`` next. ``from_n``: the frame number
        the cursor is at (None after a seek: find it by timestamp)."""
        if from_n is not None:
            for _ in range(start - from_n):
                next(cur.packets)
            cur.next_n = start
            return True
        target = frames.aux[start]
        dup = 0
        n = start - 1
        while n >= 0 and frames.aux[n] == target:
            dup += 1
            n -= 1
        for raw, pkt in cur.packets:
            if raw < target:
                continue
            if raw > target:
                return False
            if dup == 0:
                cur.packets = _chain(raw, pkt, cur.packets)
                cur.next_n = start
                return True
            dup -= 1
        return False

    def _position(self, track: int, frames: TrackIndex, start: int) -> _Cursor:
        cur = self.cursors.get(track)
        if cur is not None and cur.next_n == start:
            return cur
        if cur is not None and 0 <= cur.next_n < start and start - cur.next_n < 512:
            self._skip_to(cur, frames, start, cur.next_n)
            return cur
        cur = self._fresh(track)
        if start == 0:
            return cur
        target = frames.aux[start] - int(SEEK_BACK_S / cur.stream.time_base)
        try:
            cur.container.seek(max(0, target), stream=cur.stream, backward=True, any_frame=False)
            cur.packets = self._iter(cur.container, cur.stream)
            if self._skip_to(cur, frames, start, None):
                return cur
        except av.FFmpegError:
            pass
        cur = self._fresh(track)  # the seek did not land before the frame: from the top
        self._skip_to(cur, frames, start, 0)
        return cur

    def load(self, track: int, frames: TrackIndex, start: int, stop: int) -> list[bytes]:
        try:
            cur = self._position(track, frames, start)
            out = []
            for n in range(start, stop):
                raw, pkt = next(cur.packets)
                if raw != frames.aux[n]:
                    cur.next_n = -1
                    raise FormatError(f"track {track}: frame {n} not found again (time {raw})")
                out.append(cur.conv.payload(bytes(pkt), _duration_ms(pkt, cur.stream.time_base)))
            cur.next_n = stop
            return out
        except StopIteration:
            self.cursors.pop(track).container.close()
            raise FormatError(f"track {track}: file ended before frame {stop - 1}") from None
        except av.FFmpegError as exc:
            raise FormatError(f"track {track}: {exc}") from exc

    def close(self) -> None:
        for cur in self.cursors.values():
            cur.container.close()
        self.cursors.clear()


def _chain(raw: int, pkt: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield raw, pkt
    yield from rest


main = make_main(CAPS, AvFormat)

if __name__ == "__main__":
    main()
