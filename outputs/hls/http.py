"""HLS with MPEG-TS segments, plugged into MistOutHTTP under ``/hls/``.

URLs (MistServer's layout, reference section 4):

* ``/hls/<s>/index.m3u8`` -- master playlist: one variant per video x audio track pair
* ``/hls/<s>/<vid>_<aud>/index.m3u8`` (or ``/<trk>/index.m3u8``) -- media playlist
* ``/hls/<s>/<vid>_<aud>/<from>_<until>.ts`` -- a segment, named by its ms times
* ``/hls/<s>/<sub>/index.m3u8``, ``<from>_<until>.vtt`` -- WebVTT subtitle rendition

Live playlists list the complete segments of the last four target durations or more
(the open segment is never listed), with EXT-X-PROGRAM-DATE-TIME and
EXT-X-DISCONTINUITY where a publisher resumed; VoD playlists list everything and end
with EXT-X-ENDLIST. A segment is muxed once per track combination and cached; the
muxer of the previous segment carries on, so continuity counters run on across
segments played in order.
"""

from __future__ import annotations

import heapq
from typing import Any

from mistcodecs.hls import (
    MasterPlaylist,
    Rendition,
    SegmentSpan,
    Variant,
    live_window,
    media_playlist,
)
from mistcodecs.mp4.codecs import codec_string
from mistcodecs.ts import TsMuxer
from mistcodecs.ts.mux import START_90K
from outputs.formats import (
    SourceEntry,
    register_prefix,
    register_source,
)
from outputs.hls import player, respond, webvtt
from outputs.hls.engine import SERVICE, StreamSegments, init_tag
from outputs.hls.tscc import align_counters
from outputs.http.message import Request, Response, error_response
from shm.model import Packet, TrackMeta

VIDEO = frozenset({"H264", "HEVC"})
AUDIO = frozenset({"AAC", "MP3", "AC3", "EAC3"})


def ts_tracks(seg: StreamSegments) -> tuple[list[TrackMeta], list[TrackMeta]]:
    tracks = sorted(seg.tracks.values(), key=lambda t: t.id)
    return (
        [t for t in tracks if t.type == "video" and t.codec in VIDEO],
        [t for t in tracks if t.type == "audio" and t.codec in AUDIO],
    )


def combinations(seg: StreamSegments) -> list[list[TrackMeta]]:
    video, audio = ts_tracks(seg)
    if video and audio:
        return [[v, a] for v in video for a in audio]
    return [[t] for t in video or audio]


def variant_for(combo: list[TrackMeta], uri: str) -> Variant:
    bandwidth = sum(max(t.bps, t.maxbps) * 8 for t in combo)
    video = next((t for t in combo if t.type == "video"), None)
    return Variant(
        uri=uri,
        bandwidth=max(bandwidth + bandwidth // 10, 64_000),  # ~10 % TS overhead
        codecs=",".join(codec_string(t) for t in combo),
        resolution=(video.width, video.height) if video and video.width else None,
        frame_rate=video.fps if video and video.fpks else None,
    )


def subtitle_tracks(seg: StreamSegments) -> list[TrackMeta]:
    return sorted(
        (t for t in seg.tracks.values() if t.type == "meta" and t.codec == "subtitle"),
        key=lambda t: t.id,
    )


def subtitle_renditions(seg: StreamSegments) -> list[Rendition]:
    return [
        Rendition("SUBTITLES", "sub", t.lang or f"subtitle{t.id}", uri=f"{t.id}/index.m3u8",
                  language=t.lang or None, autoselect=True)
        for t in subtitle_tracks(seg)
    ]  # fmt: skip


def master(seg: StreamSegments) -> str:
    pl = MasterPlaylist(independent_segments=True, renditions=subtitle_renditions(seg))
    group = "sub" if pl.renditions else None
    for combo in combinations(seg):
        variant = variant_for(combo, "_".join(str(t.id) for t in combo) + "/index.m3u8")
        variant.subtitles = group
        pl.variants.append(variant)
    return pl.render()


def discontinuity_info(seg: StreamSegments, shown: list[SegmentSpan]) -> tuple[set[int], int]:
    """MSNs that follow a publisher resume, and how many resumes precede the window."""
    msns: set[int] = set()
    before = 0
    first = shown[0].msn if shown else seg.next_msn
    for mark in seg.discontinuities:
        after = next((s for s in seg.spans if s.start_ms >= mark), None)
        msn = after.msn if after is not None else seg.next_msn
        if msn <= first:
            before += 1
        else:
            msns.add(msn)
    return msns, before


def window_of(seg: StreamSegments) -> list[SegmentSpan]:
    if not seg.live:
        return seg.spans
    keep = live_window(seg.spans, seg.target_s) if seg.spans else 0
    return seg.spans[-keep:] if keep else []


def media(seg: StreamSegments, ext: str = "ts") -> str:
    shown = window_of(seg)
    marks, before = discontinuity_info(seg, shown)
    pl = media_playlist(
        shown,
        uri=lambda s: f"{s.name}.{ext}",
        target_ms=seg.target_ms,
        target=seg.target_s,
        ended=seg.ended,
        discontinuities=marks,
        discontinuity_sequence=before,
        utc_offset_ms=seg.utc_offset_ms if seg.live else None,
    )
    if not seg.live:
        pl.playlist_type = "VOD"
    return pl.render()


def parse_combo(seg: StreamSegments, text: str) -> list[TrackMeta] | None:
    ids = text.split("_")
    if not all(i.isdigit() for i in ids) or len(ids) > 2:
        return None
    video, audio = ts_tracks(seg)
    usable = {t.id: t for t in video + audio}
    combo = [usable.get(int(i)) for i in ids]
    if any(t is None for t in combo) or len({t.type for t in combo if t}) != len(combo):
        return None
    return [t for t in combo if t is not None]


def mux_ts(combo: list[TrackMeta], span: SegmentSpan, packets: dict[int, list[Packet]]) -> bytes:
    """One TS segment: PAT/PMT, then the packets in decode order, counters aligned."""
    muxer = TsMuxer(combo, psi_on_keyframes=False)
    merged = heapq.merge(*packets.values(), key=lambda p: (p.dts, p.track))
    body = muxer.segment_start() + b"".join(muxer.packet(p) for p in merged)
    return align_counters(body, span.msn)


async def segment_bytes(seg: StreamSegments, combo: list[TrackMeta], span: SegmentSpan) -> bytes:
    ids = [t.id for t in combo]

    async def produce() -> bytes:
        packets = await seg.packets(ids, span.start_ms, span.end_ms, SERVICE.open_reader)
        return mux_ts(combo, span, packets)

    return await respond.cached(ts_key(seg, combo, span), produce)


def ts_key(seg: StreamSegments, combo: list[TrackMeta], span: SegmentSpan) -> tuple[Any, ...]:
    ids = tuple((t.id, init_tag(t)) for t in combo)
    return ("ts", seg.stream, seg.generation, ids, span.start_ms, span.end_ms)


async def webvtt_bytes(
    seg: StreamSegments, track: TrackMeta, span: SegmentSpan, mpegts: int, shift_ms: int = 0
) -> bytes:
    """The cues overlapping ``span``, their times moved by ``shift_ms`` (DASH lifts a
    negative VoD start to 0)."""

    async def produce() -> bytes:
        lo = span.start_ms - webvtt.CUE_LOOKBACK_MS
        if seg.live and seg.window.first_ms is not None:
            lo = max(lo, seg.window.first_ms)
        packets = await seg.packets([track.id], lo, span.end_ms, SERVICE.open_reader)
        cues = webvtt.cues(packets[track.id])
        if shift_ms:
            cues = [webvtt.Cue(c.start_ms + shift_ms, c.end_ms + shift_ms, c.text) for c in cues]
        return webvtt.segment(cues, span.start_ms + shift_ms, span.end_ms + shift_ms, mpegts)

    return await respond.cached(vtt_key(seg, track, span, mpegts, shift_ms), produce)


def vtt_key(
    seg: StreamSegments, track: TrackMeta, span: SegmentSpan, mpegts: int, shift_ms: int = 0
) -> tuple[Any, ...]:
    return ("vtt", seg.stream, seg.generation, track.id, span.start_ms, mpegts, shift_ms)


async def subtitle_response(
    req: Request, seg: StreamSegments, track: TrackMeta, leaf: str, mpegts: int
) -> Response:
    """``index.m3u8`` or ``<from>_<until>.vtt`` of a subtitle rendition."""
    if leaf == "index.m3u8":
        if not await seg.until_playable():
            return error_response(503, "not enough complete segments yet")
        text = seg.memo(("vtt-media",), lambda: media(seg, "vtt"))
        return respond.playlist_response(req, text, respond.M3U8, seg)
    start, _, until = leaf.removesuffix(".vtt").partition("_")
    span = seg.span_at(int(start)) if leaf.endswith(".vtt") and start.isdigit() else None
    if span is None or str(span.end_ms) != until:
        return respond.not_found(f"subtitle segment {leaf}")
    body = await webvtt_bytes(seg, track, span, mpegts)
    return respond.media_response(req, seg, body, respond.VTT, vtt_key(seg, track, span, mpegts))


def _prewarm(combo: list[TrackMeta]) -> Any:
    def run(seg: StreamSegments) -> None:
        if seg.spans:
            span = seg.spans[-1]
            respond.prefetch(ts_key(seg, combo, span), lambda: segment_bytes(seg, combo, span))

    return run


async def _handle(req: Request, stream: str, rest: str) -> Response:
    if not rest and stream in player.LIBS:
        return player.serve(req, stream)  # /hls/hlsjs.js, /hls/dashjs.js
    seg = await SERVICE.get(stream)
    if rest == "index.m3u8":
        if not combinations(seg):
            return error_response(415, f"stream {stream!r} has no track HLS (TS) can carry")
        return respond.playlist_response(req, master(seg), respond.M3U8, seg)
    head, _, leaf = rest.partition("/")
    sub = next((t for t in subtitle_tracks(seg) if str(t.id) == head), None)
    if sub is not None and "/" not in leaf:
        return await subtitle_response(req, seg, sub, leaf, START_90K)
    combo = parse_combo(seg, head)
    if combo is None or "/" in leaf:
        return respond.not_found(f"/hls/{stream}/{rest}")
    if leaf == "index.m3u8":
        if not await seg.until_playable():
            return error_response(503, f"stream {stream!r} has not enough segments yet")
        seg.want(("ts", tuple(t.id for t in combo)), _prewarm(combo))
        text = seg.memo(("hls-media", tuple(t.id for t in combo)), lambda: media(seg))
        return respond.playlist_response(req, text, respond.M3U8, seg)
    if leaf.endswith(".ts"):
        start, _, until = leaf[:-3].partition("_")
        if not (start.isdigit() and until.isdigit()):
            return respond.not_found(f"segment {leaf}")
        t0, t1 = int(start), int(until)
        if seg.live and seg.span_at(t0) is None and t0 == seg.open_start:
            # the segment being made: answer once it is complete
            await seg.wait_for(lambda: seg.span_at(t0) is not None, 3.0 * seg.target_s)
        span = seg.span_at(t0)
        if span is None or span.end_ms != t1:
            return respond.not_found(f"segment {leaf}")
        body = await segment_bytes(seg, combo, span)
        return respond.media_response(req, seg, body, respond.TS, ts_key(seg, combo, span))
    return respond.not_found(f"/hls/{stream}/{rest}")


handle = respond.prefix_handler(_handle)


def register() -> None:
    """Called by MistOutHTTP at start-up (``outputs.formats.load_plugins``)."""
    register_prefix("hls", handle, "HLS")
    player.register()
    register_source(
        SourceEntry(
            "html5/application/vnd.apple.mpegurl", "HLS (TS)", 7,
            "/hls/{s}/index.m3u8", VIDEO, AUDIO,
        )
    )  # fmt: skip
