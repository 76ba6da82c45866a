"""CMAF (fragmented MP4) for DASH and HLS v7 / LL-HLS, plugged into MistOutHTTP under ``/cmaf/``.

URLs (MistServer's layout, reference section 4); one rendition per track:

* ``/cmaf/<s>/index.mpd`` -- DASH MPD (static for VoD, dynamic for live), SegmentTemplate
  ``$RepresentationID$/chunk_$Time$.m4s`` with a SegmentTimeline, timescale 1000; live it
  is LL-DASH: the segment in progress is listed last (with the previous one's duration
  as its expected length), ``availabilityTimeOffset`` lets clients fetch it after its
  first part, ``ServiceDescription`` sets a ~2 s latency target
* ``/cmaf/<s>/index.m3u8`` -- HLS master: video variants with an AUDIO group
* ``/cmaf/<s>/<trk>/index.m3u8`` -- media playlist with EXT-X-MAP; live ones are LL-HLS
  (EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-SERVER-CONTROL, EXT-X-RENDITION-REPORT) and
  answer blocking reloads (``_HLS_msn``/``_HLS_part``; bad values are a 400)
* ``/cmaf/<s>/<trk>/init.m4s``, ``chunk_<t>.m4s`` (segment), ``chunk_<t>.<n>.m4s`` (part);
  the segment in progress is sent with chunked transfer, part by part as made
* ``/cmaf/<s>/<sub>/index.m3u8`` -- WebVTT subtitles for HLS; the MPD lists the same
  segments as ``<sub>/chunk_<t>.vtt`` (a text AdaptationSet per subtitle track)

DASH and HLS share the same segment bytes. A live segment is ``styp`` plus the
moof+mdat of each of its parts, so a segment and its parts hold the same fragments.
A request for a part or segment that is still being produced waits for it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from mistcodecs.dash import Mpd, mpd_for_tracks
from mistcodecs.hls import (
    BadDirective,
    MasterPlaylist,
    Outcome,
    PartSpan,
    PlaylistState,
    Rendition,
    RenditionReport,
    SegmentSpan,
    Variant,
    block_timeout,
    decide,
    media_playlist,
    parse_directives,
)
from mistcodecs.mp4 import Mp4FragmentMuxer
from mistcodecs.mp4.codecs import codec_string
from mistcodecs.mp4.records import Ftyp
from outputs.formats import SourceEntry, register_prefix, register_source
from outputs.hls import respond
from outputs.hls.engine import SERVICE, StreamSegments, init_tag
from outputs.hls.http import (
    discontinuity_info,
    subtitle_renditions,
    subtitle_response,
    subtitle_tracks,
    vtt_key,
    webvtt_bytes,
    window_of,
)
from outputs.http.message import Request, Response, Sink, error_response
from shm.model import TrackMeta

VIDEO = frozenset({"H264", "HEVC", "AV1", "VP9"})
AUDIO = frozenset({"AAC", "MP3", "AC3", "EAC3", "opus", "FLAC"})
STYP = bytes(Ftyp("msdh", 0, ["msdh", "msix", "cmfs", "cmfc", "iso6"], kind="styp"))
PART_HOLD_BACK_S = 1.5
PARTS_PER_SEGMENT = 64  # mfhd sequence numbers: segment msn * 64 + part index + 1


def cmaf_tracks(seg: StreamSegments) -> list[TrackMeta]:
    return [
        t
        for t in sorted(seg.tracks.values(), key=lambda t: t.id)
        if (t.type == "video" and t.codec in VIDEO) or (t.type == "audio" and t.codec in AUDIO)
    ]


def shift_of(seg: StreamSegments) -> int:
    """Lift a negative first dts (edit-listed VoD) to 0: tfdt cannot be negative."""
    if seg.live:
        return 0  # live times start at or after 0, and firstms moves as the window slides
    return max(0, -min((t.firstms for t in seg.tracks.values()), default=0))


def muxer(seg: StreamSegments, track: TrackMeta) -> Mp4FragmentMuxer:
    return Mp4FragmentMuxer([track], shift_ms=shift_of(seg))


# -- manifests ---------------------------------------------------------------------------
def mpd(seg: StreamSegments, query: str = "") -> str:
    """The MPD; ``query`` (``tkn=...``) is added to the segment URL templates."""
    shown = window_of(seg)
    spans = [(s.start_ms + shift_of(seg), s.end_ms + shift_of(seg)) for s in shown]
    tracks = [(t, spans) for t in dash_tracks(seg)]
    if not seg.live:
        end = shown[-1].end_ms if shown else 0
        start = shown[0].start_ms if shown else 0
        doc = mpd_for_tracks(tracks, live=False, duration_s=(end - start) / 1000)
        return with_template_query(doc, query).render()
    offset = seg.utc_offset_ms or int(time.time() * 1000)
    opened = seg.open_start
    low_latency = not seg.ended and opened is not None and bool(shown)
    if opened is not None and low_latency:
        # LL-DASH: list the segment in progress with the last one's duration as its
        # expected length; it is sent chunked, part by part (open_segment_response)
        last = shown[-1]
        spans = [*spans, (opened, opened + last.end_ms - last.start_ms)]
        tracks = [(t, spans) for t in dash_tracks(seg)]
    doc = mpd_for_tracks(
        tracks,
        live=True,
        availability_start=datetime.fromtimestamp(offset / 1000, UTC),
        now=datetime.now(UTC),
        dvr_s=round(sum(s.duration for s in shown), 3),
        target_s=float(seg.target_s),
        low_latency_chunk_s=seg.part_ms / 1000 if low_latency else None,
    )
    return with_template_query(doc, query).render()


def dash_tracks(seg: StreamSegments) -> list[TrackMeta]:
    """The MPD's tracks: the media ones, then the subtitles (segmented WebVTT)."""
    return [*cmaf_tracks(seg), *subtitle_tracks(seg)]


def with_template_query(doc: Mpd, query: str) -> Mpd:
    if query:
        for aset in doc.adaptation_sets:
            for rep in aset.representations:
                if rep.initialization:
                    rep.initialization += f"?{query}"
                rep.media += f"?{query}"
    return doc


def master(seg: StreamSegments) -> str:
    tracks = cmaf_tracks(seg)
    video = [t for t in tracks if t.type == "video"]
    audio = [t for t in tracks if t.type == "audio"]
    pl = MasterPlaylist(independent_segments=True, version=7, renditions=subtitle_renditions(seg))
    subtitles = "sub" if pl.renditions else None
    group = "aud" if video and audio else None
    for i, a in enumerate(audio if group else []):
        pl.renditions.append(
            Rendition("AUDIO", "aud", a.lang or f"audio{a.id}", uri=f"{a.id}/index.m3u8",
                      language=a.lang or None, default=i == 0, autoselect=True,
                      channels=str(a.channels) if a.channels else None)
        )  # fmt: skip
    for t in video or audio:
        with_audio = [t, audio[0]] if group else [t]
        bandwidth = sum(max(x.bps, x.maxbps) * 8 for x in with_audio)
        pl.variants.append(
            Variant(
                uri=f"{t.id}/index.m3u8",
                bandwidth=max(bandwidth, 64_000),
                codecs=",".join(codec_string(x) for x in with_audio),
                resolution=(t.width, t.height) if t.type == "video" and t.width else None,
                frame_rate=t.fps if t.type == "video" and t.fpks else None,
                audio=group,
                subtitles=subtitles,
            )
        )
    return pl.render()


def media(seg: StreamSegments, track: TrackMeta) -> Any:
    """The media playlist (a :class:`~mistcodecs.hls.MediaPlaylist`) of one track."""
    shown = window_of(seg)
    marks, before = discontinuity_info(seg, shown)
    live_ll = seg.live and not seg.ended
    audio_only = track.type != "video"

    def part_uri(p: PartSpan) -> str:
        return f"chunk_{p.segment_start_ms}.{p.index}.m4s"

    parts = seg.ll_parts() if live_ll else []
    if audio_only:
        parts = [PartSpan(p.msn, p.index, p.start_ms, p.end_ms, True, p.segment_start_ms)
                 for p in parts]  # fmt: skip
    pl = media_playlist(
        shown,
        uri=lambda s: f"chunk_{s.start_ms}.m4s",
        target_ms=seg.target_ms,
        target=seg.target_s,
        ended=seg.ended,
        init_uri="init.m4s",
        discontinuities=marks,
        discontinuity_sequence=before,
        utc_offset_ms=seg.utc_offset_ms if seg.live else None,
        parts=parts,
        part_uri=part_uri if live_ll else None,
        part_target_ms=seg.part_ms if live_ll else None,
    )
    if not seg.live:
        pl.playlist_type = "VOD"
    if live_ll and pl.server_control is not None:
        # hold back 1.5 s (over 4 parts rather than the minimum 3): a player has room for a
        # late part or a busy moment and still sits under 2 s behind live
        pl.server_control.part_hold_back = max(PART_HOLD_BACK_S, 3 * seg.part_ms / 1000)
        open_parts = len(pl.open_parts)
        last_msn, last_part = (pl.next_msn, open_parts - 1) if open_parts else (pl.last_msn, None)
        if last_part is None and pl.segments:
            last_part = len(pl.segments[-1].parts) - 1
        pl.rendition_reports = [
            RenditionReport(f"../{t.id}/index.m3u8", last_msn, last_part)
            for t in cmaf_tracks(seg)
            if t.id != track.id
        ]
    return pl


# -- media -------------------------------------------------------------------------------
async def part_bytes(seg: StreamSegments, track: TrackMeta, part: PartSpan) -> bytes:
    async def produce() -> bytes:
        packets = await seg.packets([track.id], part.start_ms, part.end_ms, SERVICE.open_reader)
        seq = part.msn * PARTS_PER_SEGMENT + part.index + 1
        return muxer(seg, track).fragment(packets, seq & 0xFFFFFFFF, end=part.end_ms)

    return await respond.cached(part_key(seg, track, part), produce)


def part_key(seg: StreamSegments, track: TrackMeta, part: PartSpan) -> tuple[Any, ...]:
    tag = (track.id, init_tag(track))
    return ("cmaf-part", seg.stream, seg.generation, tag, part.segment_start_ms, part.index)


def segment_key(seg: StreamSegments, track: TrackMeta, span: SegmentSpan) -> tuple[Any, ...]:
    return ("cmaf", seg.stream, seg.generation, (track.id, init_tag(track)), span.start_ms)


async def segment_bytes(seg: StreamSegments, track: TrackMeta, span: SegmentSpan) -> bytes:
    async def produce() -> bytes:
        parts = seg.parts_of(span.msn) if seg.live else []
        if parts:
            return STYP + b"".join([await part_bytes(seg, track, p) for p in parts])
        packets = await seg.packets([track.id], span.start_ms, span.end_ms, SERVICE.open_reader)
        seq = (span.msn * PARTS_PER_SEGMENT + 1) & 0xFFFFFFFF
        return STYP + muxer(seg, track).fragment(packets, seq, end=span.end_ms)

    return await respond.cached(segment_key(seg, track, span), produce)


def _prewarm(track: TrackMeta) -> Any:
    def run(seg: StreamSegments) -> None:
        for part in seg.parts_of(seg.next_msn)[-2:]:
            respond.prefetch(
                part_key(seg, track, part),
                lambda p=part: part_bytes(seg, track, p),  # type: ignore[misc]
            )
        if seg.spans:
            span = seg.spans[-1]
            respond.prefetch(segment_key(seg, track, span), lambda: segment_bytes(seg, track, span))

    return run


# -- requests ----------------------------------------------------------------------------
def _media_state(seg: StreamSegments, track: TrackMeta) -> tuple[Any, PlaylistState]:
    pl = media(seg, track)
    return pl, PlaylistState.of(pl)


async def media_playlist_response(req: Request, seg: StreamSegments, track: TrackMeta) -> Response:
    try:
        directives = parse_directives(req.query)
    except BadDirective as exc:
        return error_response(400, str(exc))
    # LL-HLS players start from the parts; one complete segment is enough
    if not await seg.until_playable(1):
        return error_response(503, "no complete segment yet")
    seg.want(("cmaf", track.id), _prewarm(track))
    deadline = time.monotonic() + block_timeout(seg.target_s)
    while True:
        pl, state = seg.memo(("cmaf-media", track.id), lambda: _media_state(seg, track))
        decision = decide(state, directives)
        if decision.outcome is Outcome.BAD_REQUEST:
            return error_response(400, decision.reason)
        if decision.outcome is Outcome.ANSWER:
            blocking = directives.msn is not None
            text = seg.memo(("cmaf-text", track.id), pl.render)
            return respond.playlist_response(req, text, respond.M3U8, seg, blocking)
        left = deadline - time.monotonic()
        if left <= 0 or seg.closed:
            return error_response(503, f"timed out {decision.reason}")
        await seg.wait_change(left)


async def chunk_response(
    req: Request, seg: StreamSegments, track: TrackMeta, leaf: str
) -> Response:
    stem = leaf[len("chunk_") : -len(".m4s")]
    start_text, _, index_text = stem.partition(".")
    if not start_text.isdigit() or (index_text and not index_text.isdigit()):
        return respond.not_found(f"chunk {leaf}")
    start = int(start_text)
    if index_text:
        index = int(index_text)
        if not seg.live:
            return respond.not_found(f"part {leaf}")

        if seg.live and start == seg.open_start and seg.part_at(start, index) is None:
            # a preload hint names the next part of the open segment: hold until it exists
            await seg.wait_for(
                lambda: seg.part_at(start, index) is not None or seg.span_at(start) is not None,
                3.0 * seg.target_s,
            )
        part = seg.part_at(start, index)
        if part is None:
            return respond.not_found(f"part {leaf}")
        body = await part_bytes(seg, track, part)
        return respond.media_response(req, seg, body, respond.M4S, part_key(seg, track, part))
    if seg.live and seg.span_at(start) is None and start == seg.open_start:
        return open_segment_response(seg, track, start)
    span = seg.span_at(start)
    if span is None:
        return respond.not_found(f"segment {leaf}")
    body = await segment_bytes(seg, track, span)
    return respond.media_response(req, seg, body, respond.M4S, segment_key(seg, track, span))


async def dash_subtitle_response(
    req: Request, seg: StreamSegments, track: TrackMeta, leaf: str
) -> Response:
    """``chunk_<t>.vtt``: the WebVTT segment the MPD's text template names, its times
    (file and cues) lifted by :func:`shift_of` as the media's are; the segment in
    progress (listed last in a live MPD) is answered once it completes."""
    text = leaf[len("chunk_") : -len(".vtt")]
    shift = shift_of(seg)
    start = int(text) - shift if text.isdigit() else None
    if start is not None and seg.live and start == seg.open_start:
        await seg.wait_for(lambda: seg.span_at(start) is not None, 3.0 * seg.target_s)
    span = seg.span_at(start) if start is not None else None
    if span is None:
        return respond.not_found(f"subtitle segment {leaf}")
    body = await webvtt_bytes(seg, track, span, 0, shift)
    key = vtt_key(seg, track, span, 0, shift)
    return respond.media_response(req, seg, body, respond.VTT, key)


def open_segment_response(seg: StreamSegments, track: TrackMeta, start: int) -> Response:
    """The segment still being produced, sent with chunked transfer encoding one part
    (moof + mdat) at a time as each completes (LL-DASH style delivery); the bytes are
    those the complete segment will have."""
    msn = seg.next_msn

    async def body(sink: Sink) -> None:
        def chunk(data: bytes) -> None:
            sink.write(b"%x\r\n" % len(data) + data + b"\r\n")

        chunk(STYP)
        sent = 0
        while not sink.closed:
            done = seg.span_at(start) is not None
            parts = seg.parts_of(msn)
            if sent < len(parts):
                chunk(await part_bytes(seg, track, parts[sent]))
                await sink.drain()
                sent += 1
            elif done or seg.closed:
                break
            elif not await seg.wait_change(3.0 * seg.target_s):
                break  # the stream stalled or ended: end the body where it is
        sink.write(b"0\r\n\r\n")

    headers = {"Content-Type": respond.M4S, "Cache-Control": "no-cache",
               "Transfer-Encoding": "chunked"}  # fmt: skip
    return Response(200, headers, stream=body)


async def _handle(req: Request, stream: str, rest: str) -> Response:
    seg = await SERVICE.get(stream)
    if not cmaf_tracks(seg):
        return error_response(415, f"stream {stream!r} has no track CMAF can carry")
    if rest == "index.mpd":
        if not await seg.until_playable():
            return error_response(503, "not enough complete segments yet")
        for t in cmaf_tracks(seg):
            seg.want(("cmaf", t.id), _prewarm(t))
        return respond.playlist_response(
            req, mpd(seg, respond.session_query(req)), respond.MPD, seg
        )
    if rest == "index.m3u8":
        return respond.playlist_response(req, master(seg), respond.M3U8, seg)
    head, _, leaf = rest.partition("/")
    sub = next((t for t in subtitle_tracks(seg) if str(t.id) == head), None)
    if sub is not None and leaf.startswith("chunk_") and leaf.endswith(".vtt"):
        return await dash_subtitle_response(req, seg, sub, leaf)
    if sub is not None and "/" not in leaf:
        return await subtitle_response(req, seg, sub, leaf, 0)  # fMP4 time starts at 0
    track = next((t for t in cmaf_tracks(seg) if str(t.id) == head), None)
    if track is None or "/" in leaf:
        return respond.not_found(f"/cmaf/{stream}/{rest}")
    if leaf == "index.m3u8":
        return await media_playlist_response(req, seg, track)
    if leaf == "init.m4s":
        key = ("cmaf-init", seg.stream, seg.generation, track.id, init_tag(track))

        async def init() -> bytes:
            return muxer(seg, track).init_segment()

        body = await respond.cached(key, init)
        if seg.live:  # same URL for a new publisher's codec data: revalidate, do not pin
            return respond.body_response(req, body, respond.M4S, "public, max-age=2", key)
        return respond.media_response(req, seg, body, respond.M4S, key)
    if leaf.startswith("chunk_") and leaf.endswith(".m4s"):
        return await chunk_response(req, seg, track, leaf)
    return respond.not_found(f"/cmaf/{stream}/{rest}")


handle = respond.prefix_handler(_handle)


def register() -> None:
    """Called by MistOutHTTP at start-up (``outputs.formats.load_plugins``)."""
    register_prefix("cmaf", handle, "CMAF")
    register_source(
        SourceEntry("dash/video/mp4", "DASH (CMAF)", 6, "/cmaf/{s}/index.mpd", VIDEO, AUDIO)
    )
    register_source(
        SourceEntry(
            "html5/application/vnd.apple.mpegurl;version=7", "HLS v7 (CMAF)", 6,
            "/cmaf/{s}/index.m3u8", VIDEO, AUDIO,
        )
    )  # fmt: skip
