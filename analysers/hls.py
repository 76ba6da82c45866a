"""MistAnalyserHLS: follow an HLS playlist and check the segments against it.

The source is a master or media playlist (``http(s)://`` URL or a local file).
From a master playlist ``--variant N`` (default 0, the first) is followed, and
every EXT-X-MEDIA rendition playlist is loaded once and checked. A live playlist
is reloaded every target duration (half of it when nothing changed, as RFC 8216
6.3.4 says) -- or at once with ``_HLS_msn``/``_HLS_part`` when the server offers
CAN-BLOCK-RELOAD, checking that the answer holds what was asked for -- until
``-T`` ends the run; a playlist with EXT-X-ENDLIST is read once.

Checks: the playlist syntax and the spec's numeric rules (EXTINF vs target
duration, parts vs PART-TARGET, hold-back rules), the rules between reloads
(media sequence only grows, segments do not change, the discontinuity sequence
follows removed discontinuities), segments that fail to download or leave the
window before they were fetched, and each segment's media: MPEG-TS is demuxed
with :class:`TsDemuxer`, fMP4 read box by box (``moof``/``traf``/``tfdt``/``trun``);
the measured start of each segment must follow the previous start plus its
EXTINF (within ``--tolerance``), except across EXT-X-DISCONTINUITY.

``-D``: 1 playlist loads, 2 (default) one line per segment, 3 tracks and parts.
``-R FILE`` writes the fetched segments back to back (a TS, or init + fragments).
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import click

from analysers.common import Analyser, make_main, output_path
from mistcodecs.errors import FormatError
from mistcodecs.hls import (
    MediaPlaylist,
    Segment,
    check_media_playlist,
    check_update,
    is_master_playlist,
    parse_master_playlist,
    parse_media_playlist,
)
from mistcodecs.mp4.boxes import buffer_reader, find_path, iter_boxes, payload
from mistcodecs.mp4.records import Mdhd, Tfdt, Tfhd, Trun
from mistcodecs.ts import TsDemuxer
from shm.model import Packet, TrackMeta

Fetch = Callable[[str, float], bytes]


@dataclass
class Timing:
    """What a segment's media says about itself (ms on the segment's own clock)."""

    start_ms: float | None = None
    end_ms: float | None = None
    starts_with_key: bool | None = None
    tracks: str = ""


def resolve(base: str, ref: str) -> str:
    """A playlist reference relative to the playlist's own URL or path."""
    if "://" in base or "://" in ref:
        return urllib.parse.urljoin(base, ref)
    return ref if os.path.isabs(ref) else os.path.join(os.path.dirname(base), ref)


def fetch(url: str, timeout: float = 10.0) -> bytes:
    if url.startswith(("http://", "https://")):
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bytes(resp.read())
    with open(url, "rb") as fh:
        return fh.read()


# -- segment media ---------------------------------------------------------------------
def ts_timing(data: bytes) -> tuple[Timing, list[str]]:
    """Demux one TS segment; its timing comes from the video track, else the first one."""
    demux = TsDemuxer(origin=0)
    events = demux.feed(data) + demux.end()
    tracks = [e for e in events if isinstance(e, TrackMeta)]
    packets = [e for e in events if isinstance(e, Packet)]
    timing = Timing(tracks=",".join(sorted({t.codec for t in tracks})))
    if not packets:
        return timing, [*demux.problems, "no media frames in the segment"]
    video = {t.id for t in tracks if t.type == "video"}
    main = min(video) if video else packets[0].track
    mine = [p for p in packets if p.track == main]
    times = [p.dts for p in mine]
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    frame = statistics.median(steps) if steps else 0
    timing.start_ms = min(p.pts for p in mine) if video else times[0]
    timing.end_ms = (max(p.pts for p in mine) if video else times[-1]) + frame
    timing.starts_with_key = mine[0].keyframe if video else None
    return timing, list(demux.problems)


def init_timescales(data: bytes) -> dict[int, int]:
    """Track id -> timescale from an fMP4 init segment (``ftyp`` + ``moov`` required)."""
    read = buffer_reader(data)
    kinds = [h.type for h in iter_boxes(read, 0, len(data))]
    if "moov" not in kinds:
        raise FormatError(f"init segment has no moov box (top-level boxes: {kinds})")
    moov = find_path(read, 0, len(data), "moov")
    assert moov is not None
    scales: dict[int, int] = {}
    for trak in iter_boxes(read, moov.payload_offset, moov.end):
        if trak.type != "trak":
            continue
        tkhd = find_path(read, trak.payload_offset, trak.end, "tkhd")
        mdhd = find_path(read, trak.payload_offset, trak.end, "mdia/mdhd")
        if tkhd is None or mdhd is None:
            raise FormatError(f"trak at byte {trak.offset} lacks tkhd or mdhd")
        body = payload(read, tkhd)
        if len(body) < (24 if body[:1] == b"\x01" else 16):
            raise FormatError(f"tkhd at byte {tkhd.offset} is too short ({len(body)} bytes)")
        track_id = int.from_bytes(body[12:16] if body[0] == 0 else body[20:24], "big")
        scales[track_id] = Mdhd.parse(payload(read, mdhd)).timescale
    return scales


def fmp4_timing(data: bytes, scales: dict[int, int]) -> tuple[Timing, list[str]]:
    """Box-level sanity of a media segment plus its first track's time span."""
    read = buffer_reader(data)
    kinds: list[str] = []
    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    problems: list[str] = []
    for box in iter_boxes(read, 0, len(data)):
        kinds.append(box.type)
        if box.type != "moof":
            continue
        for traf in iter_boxes(read, box.payload_offset, box.end):
            if traf.type != "traf":
                continue
            tfhd_box = find_path(read, traf.payload_offset, traf.end, "tfhd")
            tfdt_box = find_path(read, traf.payload_offset, traf.end, "tfdt")
            if tfhd_box is None or tfdt_box is None:
                problems.append(f"traf at byte {traf.offset} lacks tfhd or tfdt")
                continue
            tfhd = Tfhd.parse(payload(read, tfhd_box))
            scale = scales.get(tfhd.track_id)
            if scale is None:
                problems.append(
                    f"fragment of track {tfhd.track_id}, which the init segment does not describe"
                )
                continue
            base = Tfdt.parse(payload(read, tfdt_box)).base_media_decode_time
            total = 0
            for run in iter_boxes(read, traf.payload_offset, traf.end):
                if run.type == "trun":
                    trun = Trun.parse(payload(read, run))
                    total += (
                        sum(trun.durations) if trun.durations else trun.count * (tfhd.duration or 0)
                    )
            starts.setdefault(tfhd.track_id, base * 1000 / scale)
            ends[tfhd.track_id] = (base + total) * 1000 / scale
    if "moof" not in kinds or "mdat" not in kinds:
        problems.append(f"media segment lacks moof or mdat (top-level boxes: {kinds})")
    timing = Timing(tracks=",".join(str(t) for t in sorted(starts)))
    if starts:
        first = min(starts)
        timing.start_ms, timing.end_ms = starts[first], ends[first]
    return timing, problems


# -- the analyser ----------------------------------------------------------------------
class HlsAnalyser(Analyser):
    name = "HLS"

    def __init__(
        self, detail: int, as_json: bool, out: IO[str] | None = None, **options: Any
    ) -> None:
        super().__init__(detail, as_json, out, **options)
        self.variant: int = options.get("variant") or 0
        self.tolerance: float = options.get("tolerance") or 0.15
        self.reconstruct: str | None = options.get("reconstruct")
        self._out_file: IO[bytes] | None = None
        self.playlist: MediaPlaylist | None = None
        self.loads = 0
        self.unchanged_loads = 0
        self.pending_directive: tuple[int, int | None] | None = None
        self.blocking_reloads = 0
        self.failed_reloads = 0
        self._failures_seen = 0
        self.fetched: set[int] = set()
        self.last_fetched: int | None = None
        self.seen_problems: set[str] = set()
        self.prev_timing: tuple[int, Segment, Timing] | None = None
        self.init_url: str | None = None
        self.scales: dict[int, int] = {}
        self.bytes = 0
        self.listed_s = 0.0
        self.measured_s = 0.0
        self.segments = 0
        self.missing = 0
        self.discontinuities = 0
        self.longest = 0.0
        self.codecs: set[str] = set()
        self.renditions: list[tuple[str, str, str]] = []  # (type, name, playlist URL)

    def feed(self, data: bytes) -> None:
        """Bytes arrive through :meth:`on_segment`; the frame only passes heartbeats."""

    def problem_once(self, text: str) -> None:
        if text not in self.seen_problems:
            self.seen_problems.add(text)
            self.problem(text)

    def choose_variant(self, url: str, text: str) -> str:
        master = parse_master_playlist(text)
        for i, v in enumerate(master.variants):
            self.emit(
                f"variant {i}: {v.uri} BANDWIDTH={v.bandwidth} CODECS={v.codecs} RESOLUTION={v.resolution}",
                {"variant": i, "uri": v.uri, "bandwidth": v.bandwidth, "codecs": v.codecs},
                level=1,
            )
        groups = {(r.type, r.group_id) for r in master.renditions}
        for v in master.variants:
            for kind, group in (("AUDIO", v.audio), ("SUBTITLES", v.subtitles)):
                if group is not None and (kind, group) not in groups:
                    self.problem_once(
                        f"variant {v.uri} names {kind} group {group!r} that is not defined"
                    )
        if not 0 <= self.variant < len(master.variants):
            raise FormatError(
                f"variant {self.variant} asked for, the master playlist has {len(master.variants)}"
            )
        self.renditions = [
            (r.type, r.name, resolve(url, r.uri)) for r in master.renditions if r.uri
        ]
        return resolve(url, master.variants[self.variant].uri)

    def on_rendition(
        self, kind: str, name: str, url: str, text: str | None, error: str = ""
    ) -> None:
        """One load of an EXT-X-MEDIA rendition's playlist: it must be a valid media playlist."""
        if text is None:
            self.problem(f"{kind} rendition {name!r}: cannot fetch {url}: {error}")
            return
        try:
            pl = parse_media_playlist(text)
        except FormatError as exc:
            self.problem(f"{kind} rendition {name!r} ({url}): {exc}")
            return
        for p in check_media_playlist(pl):
            self.problem_once(f"{kind} rendition {name!r}: {p}")
        self.emit(
            f"{kind} rendition {name!r}: {len(pl.segments)} segments, MSN {pl.first_msn}..{pl.last_msn}",
            {"rendition": name, "type": kind, "segments": len(pl.segments)},
            level=1,
        )

    def on_playlist(self, url: str, text: str) -> list[tuple[int, Segment, str]]:
        """A (re)load of the media playlist: check it, return the segments to fetch."""
        pl = parse_media_playlist(text)
        self.loads += 1
        self._check_directive(pl)
        for p in check_media_playlist(pl):
            self.problem_once(p)
        old = self.playlist
        if old is not None:
            for p in check_update(old, pl):
                self.problem(f"reload {self.loads}: {p}")
            self.unchanged_loads = self.unchanged_loads + 1 if pl.next_msn == old.next_msn else 0
        self.playlist = pl
        self.emit(
            f"playlist load {self.loads}: MSN {pl.first_msn}..{pl.last_msn}, target {pl.target_duration} s"
            + (", ended" if pl.endlist else ", live")
            + (f", {len(pl.open_parts)} open parts" if pl.open_parts else ""),
            {
                "load": self.loads,
                "first_msn": pl.first_msn,
                "last_msn": pl.last_msn,
                "target": pl.target_duration,
                "ended": pl.endlist,
            },
            level=1,
        )
        if self.last_fetched is not None and pl.first_msn > self.last_fetched + 1:
            self.problem(
                f"segments {self.last_fetched + 1}..{pl.first_msn - 1} left the window before they were fetched"
            )
        todo = []
        for i, seg in enumerate(pl.segments):
            msn = pl.first_msn + i
            if msn not in self.fetched and (self.last_fetched is None or msn > self.last_fetched):
                todo.append((msn, seg, resolve(url, seg.uri)))
        return todo

    def next_reload(self, url: str) -> tuple[str, float] | None:
        """(URL, seconds to wait) for the next reload; None when the playlist has ended.

        A server that can block (CAN-BLOCK-RELOAD=YES over HTTP) is asked at once for
        the next part or segment with ``_HLS_msn``/``_HLS_part``; otherwise the
        playlist is reloaded after a target duration (half of it when it did not
        change, RFC 8216 6.3.4)."""
        pl = self.playlist
        if pl is None or pl.endlist:
            return None
        target = float(pl.target_duration or 1)
        control = pl.server_control
        if (
            control is not None
            and control.can_block_reload
            and url.startswith(("http://", "https://"))
        ):
            part = len(pl.open_parts) if pl.part_target is not None else None
            self.pending_directive = (pl.next_msn, part)
            query = f"_HLS_msn={pl.next_msn}" + (f"&_HLS_part={part}" if part is not None else "")
            return url + ("&" if urllib.parse.urlsplit(url).query else "?") + query, 0.0
        if self.unchanged_loads and self.unchanged_loads * target / 2 > 3 * target:
            self.problem_once(f"live playlist did not grow for more than {3 * target:g} s")
        return url, target / 2 if self.unchanged_loads else target

    def _just_failed(self) -> bool:
        failed, self._failures_seen = self.failed_reloads > self._failures_seen, self.failed_reloads
        return failed

    def reload_failed(self, url: str, error: str) -> None:
        self.pending_directive = None
        self.failed_reloads += 1
        self.problem(f"playlist reload {url} failed: {error}")

    def _check_directive(self, pl: MediaPlaylist) -> None:
        if self.pending_directive is None:
            return
        msn, part = self.pending_directive
        self.pending_directive = None
        self.blocking_reloads += 1
        done = (
            pl.endlist
            or pl.next_msn > msn
            or (part is not None and pl.next_msn == msn and len(pl.open_parts) > part)
        )
        if not done:
            what = f"_HLS_msn={msn}" + (f"&_HLS_part={part}" if part is not None else "")
            self.problem(
                f"blocking reload {what} was answered with a playlist that lacks it (up to MSN {pl.last_msn}, {len(pl.open_parts)} open parts)"
            )

    def init_section(self, seg: Segment, url: str) -> str | None:
        """The EXT-X-MAP URL in force for this segment when it changed (to fetch)."""
        if seg.init is None:
            return None
        init = resolve(url, seg.init.uri)
        return None if init == self.init_url else init

    def on_init(self, url: str, data: bytes) -> None:
        self.init_url = url
        if data[4:8] in (b"ftyp", b"moov", b"styp"):
            self.scales = init_timescales(data)
            self.emit(
                f"init section {url}: tracks {self.scales}",
                {"init": url, "timescales": self.scales},
                level=3,
            )
        self._write(data)

    def on_missing(self, msn: int, seg: Segment, url: str, error: str) -> None:
        self.missing += 1
        self.fetched.add(msn)
        self.last_fetched = msn
        self.problem(f"segment {msn} ({seg.uri}): cannot fetch: {error}")
        self.prev_timing = None  # timing continuity cannot be checked across the hole

    def on_segment(self, msn: int, seg: Segment, url: str, data: bytes) -> None:
        self.fetched.add(msn)
        self.last_fetched = msn
        self.segments += 1
        self.bytes += len(data)
        self.listed_s += seg.duration
        self.longest = max(self.longest, seg.duration)
        self.discontinuities += seg.discontinuity
        self.media_ms = round(self.listed_s * 1000)
        try:
            if data[:1] == b"\x47":
                timing, problems = ts_timing(data)
            elif self.scales or data[4:8] in (b"styp", b"moof", b"sidx", b"emsg", b"prft"):
                timing, problems = fmp4_timing(data, self.scales)
            elif data.lstrip(b"\xef\xbb\xbf").startswith(b"WEBVTT"):
                timing, problems = Timing(tracks="WebVTT"), []  # subtitle segment: no media clock
            elif data[:3] == b"ID3":
                timing, problems = Timing(tracks="packed-audio"), []  # RFC 8216 3.4, not timed here
            else:
                timing, problems = (
                    Timing(),
                    [f"unrecognised segment format (starts {data[:8].hex()})"],
                )
        except FormatError as exc:
            timing, problems = Timing(), [str(exc)]
        for p in problems:
            self.problem(f"segment {msn} ({seg.uri}): {p}")
        self.codecs.update(c for c in timing.tracks.split(",") if c)
        measured = ""
        if timing.start_ms is not None and timing.end_ms is not None:
            self.measured_s += (timing.end_ms - timing.start_ms) / 1000
            measured = f" media {timing.start_ms / 1000:.3f}..{timing.end_ms / 1000:.3f} s"
        self.emit(
            f"segment {msn}: {seg.uri} EXTINF {seg.duration:.3f} s, {len(data)} bytes{measured}"
            + (" DISCONTINUITY" if seg.discontinuity else ""),
            {
                "msn": msn,
                "uri": seg.uri,
                "extinf": seg.duration,
                "bytes": len(data),
                "start_ms": timing.start_ms,
                "end_ms": timing.end_ms,
                "discontinuity": seg.discontinuity,
            },
            level=2,
        )
        for i, part in enumerate(seg.parts):
            self.emit(
                f"  part {i}: {part.uri} {part.duration:.3f} s"
                + (" independent" if part.independent else ""),
                {"msn": msn, "part": i, "uri": part.uri, "duration": part.duration},
                level=3,
            )
        pl = self.playlist
        if pl is not None and pl.independent_segments and timing.starts_with_key is False:
            self.problem(
                f"segment {msn} ({seg.uri}) does not start with a keyframe, yet EXT-X-INDEPENDENT-SEGMENTS is set"
            )
        self._check_timing(msn, seg, timing)
        self._write(data)

    def _check_timing(self, msn: int, seg: Segment, timing: Timing) -> None:
        prev = self.prev_timing
        if prev is not None and timing.start_ms is not None and not seg.discontinuity:
            prev_msn, prev_seg, prev_timing = prev
            if prev_msn == msn - 1 and prev_timing.start_ms is not None:
                actual = (timing.start_ms - prev_timing.start_ms) / 1000
                if abs(actual - prev_seg.duration) > self.tolerance:
                    self.problem(
                        f"segment {prev_msn} ({prev_seg.uri}): EXTINF {prev_seg.duration:.3f} s but the next segment "
                        f"starts {actual:.3f} s later"
                    )
        self.prev_timing = (msn, seg, timing)

    def finish(self) -> None:
        last = self.prev_timing
        pl = self.playlist
        if last is not None and pl is not None and pl.endlist:
            msn, seg, timing = last
            if timing.start_ms is not None and timing.end_ms is not None:
                actual = (timing.end_ms - timing.start_ms) / 1000
                if abs(actual - seg.duration) > self.tolerance:
                    self.problem(
                        f"segment {msn} ({seg.uri}): EXTINF {seg.duration:.3f} s but its media lasts {actual:.3f} s"
                    )
        if self.segments == 0 and not self.problems:
            self.problem("no segment was fetched")
        if self._out_file is not None:
            self._out_file.close()
            self._out_file = None
        self.summary = {
            "segments": self.segments,
            "missing": self.missing,
            "loads": self.loads,
            "listed_s": round(self.listed_s, 3),
            "media_s": round(self.measured_s, 3),
            "longest_s": round(self.longest, 3),
            "target_s": pl.target_duration if pl else None,
            "discontinuities": self.discontinuities,
            "kbps": round(self.bytes * 8 / self.listed_s / 1000) if self.listed_s else 0,
            "tracks": "+".join(sorted(self.codecs)) or "-",
            "blocking_reloads": self.blocking_reloads,
        }
        self.emit(
            "timeline: " + " ".join(f"{k}={v}" for k, v in self.summary.items()),
            {"timeline": self.summary},
            level=0,
        )

    def _write(self, data: bytes) -> None:
        if self.reconstruct is None:
            return
        if self._out_file is None:
            self._out_file = open(self.reconstruct, "wb")  # noqa: SIM115 - lives across calls
        self._out_file.write(data)


def hls_chunks(
    holder: list[HlsAnalyser], getter: Fetch = fetch
) -> Callable[[str, float, dict[str, Any]], Iterator[bytes]]:
    """The source callable for :func:`make_main`: the fetch loop. It yields ``b""`` as a
    heartbeat after every step so the frame checks ``-T`` and paces ``-V``."""

    def chunks(source: str, timeout: float, _opts: dict[str, Any]) -> Iterator[bytes]:
        analyser = holder[-1]
        # End just before the frame's own -T check so finish() still runs for live streams.
        deadline = time.monotonic() + (max(timeout - 0.6, 0.1) if timeout else 1e12)

        def gen() -> Iterator[bytes]:
            url = source
            text = getter(url, 10.0).decode("utf-8", "replace")
            if is_master_playlist(text):
                url = analyser.choose_variant(url, text)
                for kind, name, rendition_url in analyser.renditions:
                    try:
                        body = getter(rendition_url, 10.0).decode("utf-8", "replace")
                    except OSError as exc:
                        analyser.on_rendition(kind, name, rendition_url, None, str(exc))
                    else:
                        analyser.on_rendition(kind, name, rendition_url, body)
                    yield b""
                text = getter(url, 10.0).decode("utf-8", "replace")
            fresh: str | None = text
            while True:
                todo = analyser.on_playlist(url, fresh) if fresh is not None else []
                for msn, seg, seg_url in todo:
                    init = analyser.init_section(seg, url)
                    try:
                        if init is not None:
                            analyser.on_init(init, getter(init, 10.0))
                        data = getter(seg_url, 10.0)
                    except OSError as exc:
                        analyser.on_missing(msn, seg, seg_url, str(exc))
                    else:
                        analyser.on_segment(msn, seg, seg_url, data)
                    yield b""
                    if time.monotonic() >= deadline:
                        return
                step = analyser.next_reload(url)
                if step is None:
                    return
                reload_url, delay = step
                wake = time.monotonic() + delay
                while (now := time.monotonic()) < wake:
                    if now >= deadline:
                        return
                    time.sleep(min(0.1, wake - now))
                    yield b""
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    fresh = getter(reload_url, min(10.0, left)).decode("utf-8", "replace")
                except OSError as exc:  # a live server may fail one reload: note it, go on
                    analyser.reload_failed(reload_url, str(exc))
                    fresh = None

        return gen()

    return chunks


def _build() -> Any:
    holder: list[HlsAnalyser] = []

    def factory(**kwargs: Any) -> HlsAnalyser:
        analyser = HlsAnalyser(**kwargs)
        holder.append(analyser)
        return analyser

    return make_main(
        factory,
        "Follow an HLS playlist (URL or file) and check its segments against it.",
        [
            click.option(
                "-R",
                "--reconstruct",
                default=None,
                type=click.Path(dir_okay=False, writable=True),
                callback=output_path,
                help="Write the fetched segments to this file.",
            ),
            click.option(
                "--variant",
                type=int,
                default=0,
                show_default=True,
                help="Variant of a master playlist to follow.",
            ),
            click.option(
                "--tolerance",
                type=float,
                default=0.15,
                show_default=True,
                help="Seconds EXTINF may differ from the media.",
            ),
        ],
        hls_chunks(holder),
    )


main = _build()

if __name__ == "__main__":
    main()
