"""DASH MPD builder and parser (ISO/IEC 23009-1, DASH-IF IOP live profile).

One Period, one AdaptationSet per content type, one Representation per track,
each with its own ``SegmentTemplate`` (timescale 1000, MistServer's names
``$RepresentationID$/init.m4s`` and ``$RepresentationID$/chunk_$Time$.m4s``) and a
``SegmentTimeline`` built from the segments' ms boundaries. Subtitle tracks get an
AdaptationSet each (one language per set, DASH-IF IOP) of segmented WebVTT: mimeType
``text/vtt``, segments ``$RepresentationID$/chunk_$Time$.vtt`` and no initialization
segment -- what dash.js (its non-ISOBMFF text path) and FFmpeg's dash demuxer read. Static MPDs (VoD)
carry ``mediaPresentationDuration``; dynamic ones (live) carry
``availabilityStartTime``, ``publishTime``, ``minimumUpdatePeriod``,
``timeShiftBufferDepth``, ``suggestedPresentationDelay`` and ``UTCTiming``, and
optionally the LL-DASH attributes (``availabilityTimeOffset``,
``availabilityTimeComplete="false"``, ``ServiceDescription/Latency``).

``render()`` refuses inconsistent data with :class:`UsageError`; ``parse_mpd`` is
enough for tests and analysers and raises :class:`FormatError`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from common.errors import UsageError
from common.text import is_decimal
from mistcodecs.errors import FormatError
from mistcodecs.mp4.codecs import codec_string
from shm.model import TrackMeta

NS = "urn:mpeg:dash:schema:mpd:2011"
PROFILE_LIVE = "urn:mpeg:dash:profile:isoff-live:2011"
UTC_HTTP_ISO = "urn:mpeg:dash:utc:http-iso:2014"
UTC_DIRECT = "urn:mpeg:dash:utc:direct:2014"
INIT_TEMPLATE = "$RepresentationID$/init.m4s"
MEDIA_TEMPLATE = "$RepresentationID$/chunk_$Time$.m4s"
VTT_TEMPLATE = "$RepresentationID$/chunk_$Time$.vtt"
ROLE_SCHEME = "urn:mpeg:dash:role:2011"
_Q = f"{{{NS}}}"


@dataclass(frozen=True)
class TimelineEntry:
    """One ``S`` element: ``r + 1`` segments of duration ``d`` from time ``t``."""

    t: int
    d: int
    r: int = 0

    @property
    def end(self) -> int:
        return self.t + self.d * (self.r + 1)


def build_timeline(spans: Iterable[tuple[int, int]]) -> list[TimelineEntry]:
    """Compress (start, end) segment times into S elements (runs of equal durations)."""
    out: list[TimelineEntry] = []
    for start, end in spans:
        if end <= start:
            raise UsageError(f"segment {start}..{end} has no duration")
        if out and out[-1].end > start:
            raise UsageError(
                f"segment at {start} overlaps the previous one ending at {out[-1].end}"
            )
        if out and out[-1].end == start and out[-1].d == end - start:
            last = out[-1]
            out[-1] = TimelineEntry(last.t, last.d, last.r + 1)
        else:
            out.append(TimelineEntry(start, end - start))
    return out


def expand_timeline(entries: Iterable[TimelineEntry]) -> list[tuple[int, int]]:
    """(start, duration) of every segment a timeline describes."""
    out: list[tuple[int, int]] = []
    for e in entries:
        out.extend((e.t + i * e.d, e.d) for i in range(e.r + 1))
    return out


@dataclass
class Representation:
    id: str
    codecs: str
    bandwidth: int
    timeline: list[TimelineEntry] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    frame_rate: str | None = None  # "25" or "30000/1001"
    audio_sampling_rate: int | None = None
    channels: int | None = None
    timescale: int = 1000
    initialization: str = INIT_TEMPLATE  # "" = none (segmented WebVTT)
    media: str = MEDIA_TEMPLATE
    start_number: int | None = None
    duration: int | None = None  # fixed segment duration (templates without a timeline)
    presentation_time_offset: int = 0


@dataclass
class AdaptationSet:
    content_type: str  # video, audio or text
    mime_type: str
    representations: list[Representation] = field(default_factory=list)
    lang: str | None = None
    role: str | None = None  # urn:mpeg:dash:role:2011 value, e.g. "subtitle"


@dataclass
class Latency:
    """ServiceDescription/Latency (ms), the LL-DASH target the player aims for."""

    target: int
    min: int | None = None
    max: int | None = None


@dataclass
class Mpd:
    adaptation_sets: list[AdaptationSet] = field(default_factory=list)
    dynamic: bool = False
    media_presentation_duration: float | None = None  # seconds (static)
    availability_start_time: datetime | None = None
    publish_time: datetime | None = None
    minimum_update_period: float | None = None
    time_shift_buffer_depth: float | None = None
    suggested_presentation_delay: float | None = None
    min_buffer_time: float = 2.0
    utc_timing: list[tuple[str, str]] = field(default_factory=list)
    availability_time_offset: float | None = None  # LL-DASH: seconds a segment is early
    latency: Latency | None = None
    period_start: float = 0.0
    base_url: str | None = None

    def validate(self) -> None:
        if not self.adaptation_sets:
            raise UsageError("an MPD needs at least one AdaptationSet")
        if self.dynamic:
            if self.availability_start_time is None or self.publish_time is None:
                raise UsageError("a dynamic MPD needs availabilityStartTime and publishTime")
            if (
                self.media_presentation_duration is not None
                and self.minimum_update_period is not None
            ):
                raise UsageError("a live MPD with minimumUpdatePeriod must not fix its duration")
        else:
            if self.media_presentation_duration is None:
                raise UsageError("a static MPD needs mediaPresentationDuration")
            if self.availability_time_offset is not None or self.latency is not None:
                raise UsageError("low-latency attributes only make sense in a dynamic MPD")
        seen: set[str] = set()
        for aset in self.adaptation_sets:
            if aset.content_type not in ("video", "audio", "text"):
                raise UsageError(f"content type {aset.content_type!r} is not video, audio or text")
            for rep in aset.representations:
                if not re.fullmatch(r"[^\s]+", rep.id) or rep.id in seen:
                    raise UsageError(
                        f"representation id {rep.id!r} is empty, has spaces or is repeated"
                    )
                seen.add(rep.id)
                if rep.bandwidth <= 0 or rep.timescale <= 0:
                    raise UsageError(
                        f"representation {rep.id}: bandwidth and timescale must be positive"
                    )
                if not rep.timeline and rep.duration is None:
                    raise UsageError(
                        f"representation {rep.id}: needs a SegmentTimeline or a segment duration"
                    )
                end = None
                for s in rep.timeline:
                    if s.d <= 0 or s.r < 0 or (end is not None and s.t < end):
                        raise UsageError(
                            f"representation {rep.id}: timeline entry {s} overlaps or is empty"
                        )
                    end = s.end
                if aset.content_type == "audio" and rep.audio_sampling_rate is None:
                    raise UsageError(f"audio representation {rep.id} needs audioSamplingRate")

    def render(self) -> str:
        self.validate()
        root = ET.Element(
            "MPD",
            {
                "xmlns": NS,
                "profiles": PROFILE_LIVE,
                "type": "dynamic" if self.dynamic else "static",
            },
        )
        root.set("minBufferTime", iso_duration(self.min_buffer_time))
        if self.media_presentation_duration is not None:
            root.set("mediaPresentationDuration", iso_duration(self.media_presentation_duration))
        for name, when in (
            ("availabilityStartTime", self.availability_start_time),
            ("publishTime", self.publish_time),
        ):
            if when is not None:
                root.set(name, iso_datetime(when))
        for name, secs in (
            ("minimumUpdatePeriod", self.minimum_update_period),
            ("timeShiftBufferDepth", self.time_shift_buffer_depth),
            ("suggestedPresentationDelay", self.suggested_presentation_delay),
        ):
            if secs is not None:
                root.set(name, iso_duration(secs))
        if self.latency is not None:
            sd = ET.SubElement(root, "ServiceDescription", {"id": "0"})
            lat = {"referenceId": "0", "target": str(self.latency.target)}
            if self.latency.min is not None:
                lat["min"] = str(self.latency.min)
            if self.latency.max is not None:
                lat["max"] = str(self.latency.max)
            ET.SubElement(sd, "Latency", lat)
        if self.base_url:
            ET.SubElement(root, "BaseURL").text = self.base_url
        period = ET.SubElement(
            root, "Period", {"id": "0", "start": iso_duration(self.period_start)}
        )
        for i, aset in enumerate(self.adaptation_sets):
            a = ET.SubElement(
                period,
                "AdaptationSet",
                {
                    "id": str(i),
                    "contentType": aset.content_type,
                    "mimeType": aset.mime_type,
                    "segmentAlignment": "true",
                    "startWithSAP": "1",
                },
            )
            if aset.lang:
                a.set("lang", aset.lang)
            if aset.role:
                ET.SubElement(a, "Role", {"schemeIdUri": ROLE_SCHEME, "value": aset.role})
            for rep in aset.representations:
                self._render_rep(a, rep)
        for scheme, value in self.utc_timing:
            ET.SubElement(root, "UTCTiming", {"schemeIdUri": scheme, "value": value})
        ET.indent(root)
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            + ET.tostring(root, encoding="unicode")
            + "\n"
        )

    def _render_rep(self, parent: ET.Element, rep: Representation) -> None:
        r = ET.SubElement(parent, "Representation", {"id": rep.id})
        if rep.codecs:
            r.set("codecs", rep.codecs)
        r.set("bandwidth", str(rep.bandwidth))
        if rep.width is not None and rep.height is not None:
            r.set("width", str(rep.width))
            r.set("height", str(rep.height))
        if rep.frame_rate:
            r.set("frameRate", rep.frame_rate)
        if rep.audio_sampling_rate is not None:
            r.set("audioSamplingRate", str(rep.audio_sampling_rate))
        if rep.channels is not None:
            ET.SubElement(
                r,
                "AudioChannelConfiguration",
                {
                    "schemeIdUri": "urn:mpeg:dash:23003:3:audio_channel_configuration:2011",
                    "value": str(rep.channels),
                },
            )
        attrs = {"timescale": str(rep.timescale)}
        if rep.initialization:
            attrs["initialization"] = rep.initialization
        attrs["media"] = rep.media
        if rep.start_number is not None:
            attrs["startNumber"] = str(rep.start_number)
        if rep.duration is not None:
            attrs["duration"] = str(rep.duration)
        if rep.presentation_time_offset:
            attrs["presentationTimeOffset"] = str(rep.presentation_time_offset)
        if self.availability_time_offset is not None:
            attrs["availabilityTimeOffset"] = f"{self.availability_time_offset:g}"
            attrs["availabilityTimeComplete"] = "false"
        tpl = ET.SubElement(r, "SegmentTemplate", attrs)
        if rep.timeline:
            tl = ET.SubElement(tpl, "SegmentTimeline")
            for s in rep.timeline:
                e = ET.SubElement(tl, "S", {"t": str(s.t), "d": str(s.d)})
                if s.r:
                    e.set("r", str(s.r))


# -- ISO 8601 helpers ------------------------------------------------------------------
def iso_duration(seconds: float) -> str:
    """xs:duration in the PT form DASH players accept: ``PT1H2M3.456S``."""
    if seconds < 0:
        raise UsageError("durations cannot be negative")
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return text + f"{secs}S" if (ms or text == "PT") else text


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d*)?)S)?)?$")


def parse_duration(text: str) -> float:
    m = _DURATION.match(text.strip())
    if m is None or text.strip() in ("P", "PT"):
        raise FormatError(f"bad xs:duration {text!r}")
    days, hours, minutes, secs = m.groups()
    whole = int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60
    # Decimal sum: PT2M44.467S must read back as 164.467, not 164.46699999999998.
    return float(whole + Decimal(secs or 0))


def iso_datetime(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_datetime(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise FormatError(f"bad xs:dateTime {text!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- parsing ---------------------------------------------------------------------------
def _int(el: ET.Element, name: str, default: int | None = None) -> int | None:
    value = el.get(name)
    if value is None:
        return default
    if not is_decimal(value):
        raise FormatError(
            f"{el.tag.replace(_Q, '')}@{name}={value!r} is not a non-negative integer"
        )
    return int(value)


def _dur(el: ET.Element, name: str) -> float | None:
    value = el.get(name)
    return parse_duration(value) if value is not None else None


def parse_mpd(text: str | bytes) -> Mpd:
    """Parse an MPD (one Period is read, the first); FormatError when it is not one."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise FormatError(f"MPD is not well-formed XML: {exc}") from exc
    if root.tag != f"{_Q}MPD":
        raise FormatError(f"root element is {root.tag!r}, not MPD in namespace {NS}")
    kind = root.get("type", "static")
    if kind not in ("static", "dynamic"):
        raise FormatError(f"MPD@type {kind!r} is neither static nor dynamic")
    mpd = Mpd(dynamic=kind == "dynamic")
    mpd.media_presentation_duration = _dur(root, "mediaPresentationDuration")
    mpd.minimum_update_period = _dur(root, "minimumUpdatePeriod")
    mpd.time_shift_buffer_depth = _dur(root, "timeShiftBufferDepth")
    mpd.suggested_presentation_delay = _dur(root, "suggestedPresentationDelay")
    mpd.min_buffer_time = _dur(root, "minBufferTime") or 0.0
    if (ast := root.get("availabilityStartTime")) is not None:
        mpd.availability_start_time = parse_datetime(ast)
    if (pt := root.get("publishTime")) is not None:
        mpd.publish_time = parse_datetime(pt)
    mpd.utc_timing = [
        (u.get("schemeIdUri", ""), u.get("value", "")) for u in root.findall(f"{_Q}UTCTiming")
    ]
    lat = root.find(f"{_Q}ServiceDescription/{_Q}Latency")
    if lat is not None:
        mpd.latency = Latency(_int(lat, "target") or 0, _int(lat, "min"), _int(lat, "max"))
    if (base := root.find(f"{_Q}BaseURL")) is not None:
        mpd.base_url = (base.text or "").strip()
    period = root.find(f"{_Q}Period")
    if period is None:
        raise FormatError("MPD has no Period")
    if (start := period.get("start")) is not None:
        mpd.period_start = parse_duration(start)
    for a in period.findall(f"{_Q}AdaptationSet"):
        aset = AdaptationSet(a.get("contentType", ""), a.get("mimeType", ""), lang=a.get("lang"))
        if (role := a.find(f"{_Q}Role")) is not None:
            aset.role = role.get("value")
        a_tpl = a.find(f"{_Q}SegmentTemplate")
        for r in a.findall(f"{_Q}Representation"):
            aset.mime_type = aset.mime_type or r.get("mimeType", "")
            if not aset.content_type:
                aset.content_type = aset.mime_type.partition("/")[0]
            aset.representations.append(_parse_rep(r, a_tpl, mpd))
        mpd.adaptation_sets.append(aset)
    return mpd


def _parse_rep(r: ET.Element, a_tpl: ET.Element | None, mpd: Mpd) -> Representation:
    rid = r.get("id")
    bandwidth = _int(r, "bandwidth")
    if rid is None or bandwidth is None:
        raise FormatError("Representation lacks id or bandwidth")
    tpl = r.find(f"{_Q}SegmentTemplate")
    if tpl is None:
        tpl = a_tpl
    if tpl is None:
        raise FormatError(
            f"Representation {rid} has no SegmentTemplate (only templates are supported)"
        )
    rep = Representation(id=rid, codecs=r.get("codecs", ""), bandwidth=bandwidth)
    rep.width, rep.height = _int(r, "width"), _int(r, "height")
    rep.frame_rate = r.get("frameRate")
    rep.audio_sampling_rate = _int(r, "audioSamplingRate")
    chan = r.find(f"{_Q}AudioChannelConfiguration")
    if chan is not None and is_decimal(value := chan.get("value", "")):
        rep.channels = int(value)
    rep.timescale = _int(tpl, "timescale", 1) or 1
    rep.initialization = tpl.get("initialization", "")
    rep.media = tpl.get("media", "")
    rep.start_number = _int(tpl, "startNumber")
    rep.duration = _int(tpl, "duration")
    rep.presentation_time_offset = _int(tpl, "presentationTimeOffset", 0) or 0
    if (ato := tpl.get("availabilityTimeOffset")) is not None:
        try:
            mpd.availability_time_offset = float(ato)
        except ValueError as exc:
            raise FormatError(f"availabilityTimeOffset {ato!r} is not a number") from exc
    timeline = tpl.find(f"{_Q}SegmentTimeline")
    if timeline is not None:
        t = 0
        for s in timeline.findall(f"{_Q}S"):
            d = _int(s, "d")
            if d is None or d == 0:
                raise FormatError(f"Representation {rid}: S element without a positive d")
            t = _int(s, "t", t) or 0
            r_text = s.get("r", "0")
            if not re.fullmatch(r"-?\d+", r_text):
                raise FormatError(f"Representation {rid}: S@r={r_text!r} is not an integer")
            rep_count = int(r_text)
            if rep_count < 0:
                raise FormatError(
                    f"Representation {rid}: negative S@r (open-ended repeat) is not supported"
                )
            entry = TimelineEntry(t, d, rep_count)
            rep.timeline.append(entry)
            t = entry.end
    return rep


_VAR = re.compile(r"\$(RepresentationID|Number|Time|Bandwidth)(%0(\d+)d)?\$")


def fill_template(template: str, rep: Representation, number: int = 0, time: int = 0) -> str:
    values: dict[str, str | int] = {
        "RepresentationID": rep.id,
        "Number": number,
        "Time": time,
        "Bandwidth": rep.bandwidth,
    }

    def sub(m: re.Match[str]) -> str:
        value = values[m.group(1)]
        return f"{int(value):0{int(m.group(3))}d}" if m.group(3) else str(value)

    return _VAR.sub(sub, template).replace("$$", "$")


def segment_list(
    rep: Representation, total_duration: float | None = None
) -> list[tuple[int, int, str]]:
    """(start, duration, media URL) of every segment, in the rep's timescale."""
    number = rep.start_number if rep.start_number is not None else 1
    if rep.timeline:
        return [
            (t, d, fill_template(rep.media, rep, number + i, t))
            for i, (t, d) in enumerate(expand_timeline(rep.timeline))
        ]
    if rep.duration is None or total_duration is None:
        return []
    count = -(-round(total_duration * rep.timescale) // rep.duration)
    return [
        (
            i * rep.duration,
            rep.duration,
            fill_template(rep.media, rep, number + i, i * rep.duration),
        )
        for i in range(count)
    ]


# -- building from the media model -----------------------------------------------------
def frame_rate_text(fpks: int) -> str | None:
    """MistServer's frames-per-1000-s as an MPD frameRate ("25", "30000/1001")."""
    if fpks <= 0:
        return None
    if fpks % 1000 == 0:
        return str(fpks // 1000)
    if fpks in (23976, 29970, 59940):
        return f"{round(fpks / 1000) * 1000}/1001"
    return f"{fpks}/1000"


def representation_for(
    track: TrackMeta, spans: Iterable[tuple[int, int]], bandwidth: int | None = None
) -> Representation:
    """A Representation for one track with MistServer's template names; ``spans`` are
    its segments' (start, end) in ms; the id is the track id."""
    rep = Representation(
        id=str(track.id),
        codecs="" if track.codec == "subtitle" else codec_string(track),
        bandwidth=bandwidth or max(track.bps * 8, track.maxbps * 8, 1),
        timeline=build_timeline(spans),
    )
    if track.codec == "subtitle":
        rep.initialization, rep.media = "", VTT_TEMPLATE
    elif track.type == "video":
        rep.width, rep.height = track.width or None, track.height or None
        rep.frame_rate = frame_rate_text(track.fpks)
    elif track.type == "audio":
        rep.audio_sampling_rate = track.rate or None
        rep.channels = track.channels or None
    return rep


def mpd_for_tracks(
    tracks: Sequence[tuple[TrackMeta, Sequence[tuple[int, int]]]],
    *,
    live: bool,
    duration_s: float | None = None,
    availability_start: datetime | None = None,
    now: datetime | None = None,
    dvr_s: float | None = None,
    target_s: float = 2.0,
    utc_timing_url: str | None = None,
    low_latency_chunk_s: float | None = None,
) -> Mpd:
    """The MPD for a stream: one AdaptationSet per track type, one Representation per
    track. Live MPDs take ``availability_start`` (wall time of media time 0) and
    ``now`` (publishTime) from the caller -- no clock in here. With
    ``low_latency_chunk_s`` a live MPD announces chunked segments (LL-DASH): the last
    span of each track is then the segment in progress, listed with its expected
    duration, and ``availabilityTimeOffset`` lets a client fetch it once its first
    chunk exists."""
    sets: dict[str, AdaptationSet] = {}
    for track, spans in tracks:
        if track.codec == "subtitle":
            key, aset = f"text{track.id}", AdaptationSet("text", "text/vtt", role="subtitle")
            aset.lang = track.lang or None
        else:
            key = {"video": "video", "audio": "audio"}.get(track.type, "text")
            mime = {"video": "video/mp4", "audio": "audio/mp4"}.get(key, "application/mp4")
            aset = AdaptationSet(key, mime, lang=track.lang or None)
        aset = sets.setdefault(key, aset)
        aset.representations.append(representation_for(track, spans))
    mpd = Mpd(adaptation_sets=list(sets.values()), dynamic=live, min_buffer_time=target_s)
    if not live:
        mpd.media_presentation_duration = duration_s
        return mpd
    mpd.availability_start_time = availability_start
    mpd.publish_time = now
    # LL-DASH: the next segment must be listed soon after the open one completes
    mpd.minimum_update_period = (
        target_s if low_latency_chunk_s is None else max(0.5, 2 * low_latency_chunk_s)
    )
    mpd.time_shift_buffer_depth = dvr_s
    mpd.suggested_presentation_delay = 3 * target_s if low_latency_chunk_s is None else None
    if utc_timing_url:
        mpd.utc_timing = [(UTC_HTTP_ISO, utc_timing_url)]
    elif now is not None:
        mpd.utc_timing = [(UTC_DIRECT, iso_datetime(now))]
    if low_latency_chunk_s is not None:
        # the last listed segment is the one being produced (its duration an estimate):
        # it may be fetched once its first chunk exists, and arrives chunk by chunk
        last = min((spans[-1][1] - spans[-1][0] for _, spans in tracks if spans), default=0)
        segment_s = last / 1000 if last else target_s
        mpd.availability_time_offset = round(max(0.0, segment_s - low_latency_chunk_s), 3)
        mpd.latency = Latency(
            target=round(3 * low_latency_chunk_s * 1000 + 1000),
            min=500,
            max=round(6 * target_s * 1000),
        )
    return mpd
