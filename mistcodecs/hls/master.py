"""HLS master (multivariant) playlists: EXT-X-STREAM-INF variants and EXT-X-MEDIA renditions.

The renderer checks the cross references the spec demands (every AUDIO/SUBTITLES
group a variant names exists, SUBTITLES renditions have a URI, at most one
DEFAULT per group) and raises :class:`UsageError` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.errors import UsageError
from common.text import is_decimal
from mistcodecs.errors import FormatError
from mistcodecs.hls.attrs import format_attrs, parse_attrs, read_bool, read_float, read_int, require
from mistcodecs.hls.media import playlist_lines

RENDITION_TYPES = ("AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS")


@dataclass
class Rendition:
    """EXT-X-MEDIA: an alternative audio/subtitle/video rendition in a group."""

    type: str
    group_id: str
    name: str
    uri: str | None = None
    language: str | None = None
    default: bool = False
    autoselect: bool = False
    forced: bool = False
    channels: str | None = None
    characteristics: str | None = None


@dataclass
class Variant:
    """EXT-X-STREAM-INF plus the media playlist URI on the next line."""

    uri: str
    bandwidth: int
    average_bandwidth: int | None = None
    codecs: str | None = None
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None
    audio: str | None = None
    subtitles: str | None = None


@dataclass
class MasterPlaylist:
    variants: list[Variant] = field(default_factory=list)
    renditions: list[Rendition] = field(default_factory=list)
    version: int | None = None
    independent_segments: bool = False

    def validate(self) -> None:
        if not self.variants:
            raise UsageError("a master playlist needs at least one variant")
        groups: dict[tuple[str, str], list[Rendition]] = {}
        for r in self.renditions:
            if r.type not in RENDITION_TYPES:
                raise UsageError(f"rendition type {r.type!r} is not one of {RENDITION_TYPES}")
            if r.type == "SUBTITLES" and not r.uri:
                raise UsageError(f"SUBTITLES rendition {r.name!r} needs a URI")
            if r.type == "CLOSED-CAPTIONS" and r.uri:
                raise UsageError("CLOSED-CAPTIONS renditions have no URI")
            if r.forced and r.type != "SUBTITLES":
                raise UsageError("FORCED is only for SUBTITLES")
            if r.default and not r.autoselect:
                raise UsageError(f"rendition {r.name!r}: DEFAULT=YES needs AUTOSELECT=YES")
            groups.setdefault((r.type, r.group_id), []).append(r)
        for (kind, group), members in groups.items():
            names = [m.name for m in members]
            if len(set(names)) != len(names):
                raise UsageError(f"{kind} group {group!r} has two renditions with the same NAME")
            if sum(m.default for m in members) > 1:
                raise UsageError(f"{kind} group {group!r} has more than one DEFAULT rendition")
        for v in self.variants:
            if v.bandwidth <= 0:
                raise UsageError(f"variant {v.uri}: BANDWIDTH must be positive")
            if v.audio is not None and ("AUDIO", v.audio) not in groups:
                raise UsageError(f"variant {v.uri}: AUDIO group {v.audio!r} is not defined")
            if v.subtitles is not None and ("SUBTITLES", v.subtitles) not in groups:
                raise UsageError(f"variant {v.uri}: SUBTITLES group {v.subtitles!r} is not defined")

    def render(self) -> str:
        self.validate()
        lines = ["#EXTM3U", f"#EXT-X-VERSION:{self.version or 3}"]
        if self.independent_segments:
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        for r in self.renditions:
            lines.append(
                "#EXT-X-MEDIA:"
                + format_attrs(
                    [
                        ("TYPE", r.type, False),
                        ("GROUP-ID", r.group_id, True),
                        ("NAME", r.name, True),
                        ("LANGUAGE", r.language, True),
                        ("DEFAULT", "YES" if r.default else "NO", False),
                        ("AUTOSELECT", "YES" if r.autoselect else "NO", False),
                        ("FORCED", r.forced, False),
                        ("CHANNELS", r.channels, True),
                        ("CHARACTERISTICS", r.characteristics, True),
                        ("URI", r.uri, True),
                    ]
                )
            )
        for v in self.variants:
            resolution = f"{v.resolution[0]}x{v.resolution[1]}" if v.resolution else None
            frame_rate = f"{v.frame_rate:.3f}" if v.frame_rate else None
            lines.append(
                "#EXT-X-STREAM-INF:"
                + format_attrs(
                    [
                        ("BANDWIDTH", v.bandwidth, False),
                        ("AVERAGE-BANDWIDTH", v.average_bandwidth, False),
                        ("CODECS", v.codecs, True),
                        ("RESOLUTION", resolution, False),
                        ("FRAME-RATE", frame_rate, False),
                        ("AUDIO", v.audio, True),
                        ("SUBTITLES", v.subtitles, True),
                    ]
                )
            )
            lines.append(v.uri)
        return "\n".join(lines) + "\n"


def _resolution(text: str | None, line_no: int) -> tuple[int, int] | None:
    if text is None:
        return None
    w, _, h = text.partition("x")
    if not (is_decimal(w) and is_decimal(h)):
        raise FormatError(f"line {line_no}: RESOLUTION {text!r} is not WIDTHxHEIGHT")
    return int(w), int(h)


def parse_master_playlist(text: str) -> MasterPlaylist:
    """Parse a master playlist; FormatError names the line that is wrong."""
    pl = MasterPlaylist()
    pending: Variant | None = None
    pending_line = 0
    for line_no, line in playlist_lines(text):
        if not line.startswith("#"):
            if pending is None:
                raise FormatError(
                    f"line {line_no}: URI {line!r} without a preceding EXT-X-STREAM-INF"
                )
            pending.uri = line
            pl.variants.append(pending)
            pending = None
            continue
        tag, _, value = line.partition(":")
        if pending is not None and tag.startswith("#EXT"):
            raise FormatError(f"line {pending_line}: EXT-X-STREAM-INF is not followed by its URI")
        if tag == "#EXT-X-STREAM-INF":
            attrs = parse_attrs(value, line_no)
            bandwidth = read_int(attrs, "BANDWIDTH", line_no)
            if bandwidth is None:
                raise FormatError(
                    f"line {line_no}: EXT-X-STREAM-INF lacks the required BANDWIDTH attribute"
                )
            pending = Variant(
                uri="",
                bandwidth=bandwidth,
                average_bandwidth=read_int(attrs, "AVERAGE-BANDWIDTH", line_no),
                codecs=attrs.get("CODECS"),
                resolution=_resolution(attrs.get("RESOLUTION"), line_no),
                frame_rate=read_float(attrs, "FRAME-RATE", line_no),
                audio=attrs.get("AUDIO"),
                subtitles=attrs.get("SUBTITLES"),
            )
            pending_line = line_no
        elif tag == "#EXT-X-MEDIA":
            attrs = parse_attrs(value, line_no)
            kind = require(attrs, "TYPE", "EXT-X-MEDIA", line_no)
            if kind not in RENDITION_TYPES:
                raise FormatError(f"line {line_no}: EXT-X-MEDIA TYPE {kind!r} is unknown")
            pl.renditions.append(
                Rendition(
                    type=kind,
                    group_id=require(attrs, "GROUP-ID", "EXT-X-MEDIA", line_no),
                    name=require(attrs, "NAME", "EXT-X-MEDIA", line_no),
                    uri=attrs.get("URI"),
                    language=attrs.get("LANGUAGE"),
                    default=read_bool(attrs, "DEFAULT", line_no),
                    autoselect=read_bool(attrs, "AUTOSELECT", line_no),
                    forced=read_bool(attrs, "FORCED", line_no),
                    channels=attrs.get("CHANNELS"),
                    characteristics=attrs.get("CHARACTERISTICS"),
                )
            )
        elif tag == "#EXT-X-VERSION":
            if not is_decimal(value):
                raise FormatError(
                    f"line {line_no}: EXT-X-VERSION {value!r} is not a decimal integer"
                )
            pl.version = int(value)
        elif tag == "#EXT-X-INDEPENDENT-SEGMENTS":
            pl.independent_segments = True
        elif tag in ("#EXTINF", "#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE", "#EXT-X-PART"):
            raise FormatError(f"line {line_no}: {tag[1:]} belongs in a media playlist")
    if pending is not None:
        raise FormatError(f"line {pending_line}: EXT-X-STREAM-INF is not followed by its URI")
    if not pl.variants:
        raise FormatError("master playlist lists no variant (EXT-X-STREAM-INF)")
    return pl


def is_master_playlist(text: str) -> bool:
    """True when the text is a master playlist (it has EXT-X-STREAM-INF)."""
    return "#EXT-X-STREAM-INF" in text
