"""HLS media playlists: data model, renderer and parser (RFC 8216 + LL-HLS of rfc8216bis).

``MediaPlaylist.render()`` refuses data that would break a MUST of the spec (a
segment longer than the target duration, parts longer than the part target, a
PART-HOLD-BACK that is too short...) with :class:`UsageError`: a server bug must
not reach players. ``parse_media_playlist`` is strict about syntax (FormatError
with the line number) but lenient about the numeric rules, which
:func:`check_media_playlist` reports as problems so the analyser can list them all.

Segment durations are floats rounded to 3 decimals (ms precision, as our media
times). A segment is "complete" once its EXTINF line is written; LL-HLS parts of
the segment still being produced are kept in ``MediaPlaylist.open_parts``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from common.errors import UsageError
from common.text import is_decimal
from mistcodecs.errors import FormatError
from mistcodecs.hls.attrs import (
    format_attrs,
    format_decimal,
    parse_attrs,
    read_bool,
    read_float,
    read_int,
    require,
    to_float,
)

TOLERANCE = 0.0005  # durations are rounded to ms: compare with half a ms of slack


@dataclass(frozen=True)
class ByteRange:
    length: int
    offset: int | None = None

    def __str__(self) -> str:
        return f"{self.length}" if self.offset is None else f"{self.length}@{self.offset}"

    @classmethod
    def parse(cls, text: str, line_no: int) -> ByteRange:
        length, _, offset = text.partition("@")
        if not is_decimal(length) or (offset and not is_decimal(offset)):
            raise FormatError(f"line {line_no}: bad byte range {text!r}")
        return cls(int(length), int(offset) if offset else None)


@dataclass(frozen=True)
class InitSection:
    """EXT-X-MAP: the fMP4 init segment (or TS with PAT/PMT) for the following segments."""

    uri: str
    byterange: ByteRange | None = None


@dataclass
class Part:
    """EXT-X-PART: one partial segment (LL-HLS)."""

    duration: float
    uri: str
    independent: bool = False
    byterange: ByteRange | None = None
    gap: bool = False


@dataclass
class Segment:
    duration: float
    uri: str
    title: str = ""
    discontinuity: bool = False
    program_date_time: datetime | None = None
    byterange: ByteRange | None = None
    init: InitSection | None = None  # EXT-X-MAP in force from this segment on (None: unchanged)
    parts: list[Part] = field(default_factory=list)
    gap: bool = False


@dataclass
class ServerControl:
    can_block_reload: bool = False
    part_hold_back: float | None = None
    hold_back: float | None = None
    can_skip_until: float | None = None
    can_skip_dateranges: bool = False


@dataclass
class PreloadHint:
    type: str  # PART or MAP
    uri: str
    byterange_start: int | None = None
    byterange_length: int | None = None


@dataclass
class RenditionReport:
    uri: str
    last_msn: int | None = None
    last_part: int | None = None


@dataclass
class MediaPlaylist:
    segments: list[Segment] = field(default_factory=list)
    target_duration: int | None = None  # None: ceil of the longest segment
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    version: int | None = None  # None: the lowest version the features need
    playlist_type: str | None = None  # VOD or EVENT
    endlist: bool = False
    independent_segments: bool = False
    part_target: float | None = None  # EXT-X-PART-INF:PART-TARGET
    server_control: ServerControl | None = None
    open_parts: list[Part] = field(default_factory=list)  # parts of the segment in progress
    preload_hints: list[PreloadHint] = field(default_factory=list)
    rendition_reports: list[RenditionReport] = field(default_factory=list)
    skipped_segments: int = 0  # EXT-X-SKIP (delta update)

    # -- derived facts -------------------------------------------------------------
    @property
    def first_msn(self) -> int:
        """Media sequence number of the first segment listed (after skipped ones)."""
        return self.media_sequence + self.skipped_segments

    @property
    def next_msn(self) -> int:
        """The MSN the next complete segment will get (the one ``open_parts`` belong to)."""
        return self.media_sequence + self.skipped_segments + len(self.segments)

    @property
    def last_msn(self) -> int:
        """MSN of the last complete segment (``media_sequence - 1`` if there is none)."""
        return self.next_msn - 1

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    def identity(self) -> tuple[int, tuple[tuple[str, float], ...]]:
        """What must not change once the playlist has ended."""
        return self.media_sequence, tuple((s.uri, s.duration) for s in self.segments)

    def needed_target_duration(self) -> int:
        longest = max((round(s.duration, 3) for s in self.segments), default=0.0)
        return max(1, math.ceil(longest - TOLERANCE))

    def needed_version(self) -> int:
        version = 3  # floating-point EXTINF
        if any(s.byterange for s in self.segments) or any(
            s.init and s.init.byterange for s in self.segments
        ):
            version = 4
        if any(s.init for s in self.segments):
            version = 6
        if self.skipped_segments:
            version = 9
        return version

    # -- rendering -----------------------------------------------------------------
    def validate(self) -> None:
        """Raise UsageError for data that would make a non-conforming playlist."""
        if self.media_sequence < 0 or self.discontinuity_sequence < 0 or self.skipped_segments < 0:
            raise UsageError("sequence numbers must not be negative")
        if self.playlist_type not in (None, "VOD", "EVENT"):
            raise UsageError(f"playlist type {self.playlist_type!r} is neither VOD nor EVENT")
        if self.playlist_type == "VOD" and not self.endlist:
            raise UsageError("a VOD playlist must end with EXT-X-ENDLIST")
        if self.endlist and (self.open_parts or self.preload_hints):
            raise UsageError("an ended playlist cannot announce parts still in progress")
        for i, seg in enumerate(self.segments):
            if not seg.duration >= 0 or not seg.uri:
                raise UsageError(f"segment {i}: needs a duration >= 0 and a URI")
        needed = self.needed_target_duration()
        if self.target_duration is not None and self.target_duration < needed:
            raise UsageError(
                f"target duration {self.target_duration} s is shorter than a segment ({needed} s needed)"
            )
        needed_version = self.needed_version()
        if self.version is not None and self.version < needed_version:
            raise UsageError(
                f"version {self.version} is too low for the features used (needs {needed_version})"
            )
        all_parts = [p for s in self.segments for p in s.parts] + self.open_parts
        has_ll = bool(all_parts) or any(h.type == "PART" for h in self.preload_hints)
        if has_ll and self.part_target is None:
            raise UsageError("parts or a PART preload hint need a part target (EXT-X-PART-INF)")
        if self.part_target is not None:
            if self.part_target <= 0:
                raise UsageError("part target must be positive")
            for part in all_parts:
                if part.duration > self.part_target + TOLERANCE:
                    raise UsageError(
                        f"part {part.uri} lasts {part.duration:.3f} s > part target {self.part_target:.3f} s"
                    )
            control = self.server_control
            if control is None or control.part_hold_back is None:
                raise UsageError(
                    "a playlist with EXT-X-PART-INF needs EXT-X-SERVER-CONTROL:PART-HOLD-BACK"
                )
            if control.part_hold_back < 3 * self.part_target - TOLERANCE:
                raise UsageError("PART-HOLD-BACK must be at least 3 part target durations")
        target = self.target_duration or needed
        control = self.server_control
        if control is not None:
            if control.hold_back is not None and control.hold_back < 3 * target - TOLERANCE:
                raise UsageError("HOLD-BACK must be at least 3 target durations")
            if (
                control.can_skip_until is not None
                and control.can_skip_until < 6 * target - TOLERANCE
            ):
                raise UsageError("CAN-SKIP-UNTIL must be at least 6 target durations")
        if self.skipped_segments and (control is None or control.can_skip_until is None):
            raise UsageError("EXT-X-SKIP needs EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL")
        for hint in self.preload_hints:
            if hint.type not in ("PART", "MAP"):
                raise UsageError(f"preload hint type {hint.type!r} is neither PART nor MAP")

    def render(self) -> str:
        self.validate()
        target = self.target_duration or self.needed_target_duration()
        lines = ["#EXTM3U", f"#EXT-X-VERSION:{self.version or self.needed_version()}"]
        lines.append(f"#EXT-X-TARGETDURATION:{target}")
        if self.server_control is not None:
            c = self.server_control
            lines.append(
                "#EXT-X-SERVER-CONTROL:"
                + format_attrs(
                    [
                        ("CAN-BLOCK-RELOAD", c.can_block_reload, False),
                        ("CAN-SKIP-UNTIL", c.can_skip_until, False),
                        ("CAN-SKIP-DATERANGES", c.can_skip_dateranges, False),
                        ("HOLD-BACK", c.hold_back, False),
                        ("PART-HOLD-BACK", c.part_hold_back, False),
                    ]
                )
            )
        if self.part_target is not None:
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={format_decimal(self.part_target)}")
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}")
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        if self.playlist_type:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{self.playlist_type}")
        if self.independent_segments:
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        if self.skipped_segments:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={self.skipped_segments}")
        for seg in self.segments:
            if seg.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if seg.init is not None:
                attrs = [("URI", seg.init.uri, True)]
                if seg.init.byterange is not None:
                    attrs.append(("BYTERANGE", str(seg.init.byterange), True))
                lines.append("#EXT-X-MAP:" + format_attrs(attrs))  # type: ignore[arg-type]
            if seg.program_date_time is not None:
                lines.append("#EXT-X-PROGRAM-DATE-TIME:" + format_date_time(seg.program_date_time))
            lines.extend(_part_line(p) for p in seg.parts)
            lines.append(f"#EXTINF:{seg.duration:.3f},{seg.title}")
            if seg.byterange is not None:
                lines.append(f"#EXT-X-BYTERANGE:{seg.byterange}")
            if seg.gap:
                lines.append("#EXT-X-GAP")
            lines.append(seg.uri)
        lines.extend(_part_line(p) for p in self.open_parts)
        for hint in self.preload_hints:
            lines.append(
                "#EXT-X-PRELOAD-HINT:"
                + format_attrs(
                    [
                        ("TYPE", hint.type, False),
                        ("URI", hint.uri, True),
                        ("BYTERANGE-START", hint.byterange_start, False),
                        ("BYTERANGE-LENGTH", hint.byterange_length, False),
                    ]
                )
            )
        for report in self.rendition_reports:
            lines.append(
                "#EXT-X-RENDITION-REPORT:"
                + format_attrs(
                    [
                        ("URI", report.uri, True),
                        ("LAST-MSN", report.last_msn, False),
                        ("LAST-PART", report.last_part, False),
                    ]
                )
            )
        if self.endlist:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def _part_line(part: Part) -> str:
    return "#EXT-X-PART:" + format_attrs(
        [
            ("DURATION", round(part.duration, 3), False),
            ("URI", part.uri, True),
            ("INDEPENDENT", part.independent, False),
            ("BYTERANGE", str(part.byterange) if part.byterange else None, True),
            ("GAP", part.gap, False),
        ]
    )


def format_date_time(when: datetime) -> str:
    """ISO 8601 with milliseconds, as EXT-X-PROGRAM-DATE-TIME wants; naive means UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    text = when.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_date_time(text: str, line_no: int) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise FormatError(f"line {line_no}: bad date-time {text!r}") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# -- parsing -------------------------------------------------------------------------
def playlist_lines(text: str) -> list[tuple[int, str]]:
    """Numbered non-blank lines after checking the #EXTM3U header."""
    if text.startswith("\ufeff"):
        raise FormatError("line 1: playlist starts with a byte order mark")
    numbered = [(i + 1, line.strip()) for i, line in enumerate(text.splitlines())]
    numbered = [(n, line) for n, line in numbered if line]
    if not numbered or numbered[0][1] != "#EXTM3U":
        raise FormatError("line 1: playlist does not start with #EXTM3U")
    return numbered[1:]


def _int_value(value: str, tag: str, line_no: int) -> int:
    if not is_decimal(value):
        raise FormatError(f"line {line_no}: {tag} value {value!r} is not a decimal integer")
    return int(value)


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Parse a media playlist; FormatError says what is wrong and on which line."""
    pl = MediaPlaylist()
    pending: dict[str, object] = {}  # tags that apply to the next URI line
    pending_parts: list[Part] = []
    saw_target = False
    for line_no, line in playlist_lines(text):
        if not line.startswith("#"):
            if "duration" not in pending:
                raise FormatError(
                    f"line {line_no}: segment URI {line!r} without a preceding #EXTINF"
                )
            seg = Segment(uri=line, parts=pending_parts, **pending)  # type: ignore[arg-type]
            pl.segments.append(seg)
            pending, pending_parts = {}, []
            continue
        if not line.startswith("#EXT"):
            continue  # a comment
        tag, _, value = line.partition(":")
        if tag == "#EXTM3U":
            raise FormatError(f"line {line_no}: #EXTM3U repeated")
        if tag == "#EXTINF":
            dur, _, title = value.partition(",")
            if "duration" in pending:
                raise FormatError(f"line {line_no}: #EXTINF follows #EXTINF without a URI")
            pending["duration"] = to_float(dur, "EXTINF duration", line_no)
            pending["title"] = title
        elif tag == "#EXT-X-TARGETDURATION":
            pl.target_duration = _int_value(value, tag, line_no)
            saw_target = True
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            if pl.segments or pending:
                raise FormatError(f"line {line_no}: EXT-X-MEDIA-SEQUENCE after the first segment")
            pl.media_sequence = _int_value(value, tag, line_no)
        elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
            if pl.segments or pending:
                raise FormatError(
                    f"line {line_no}: EXT-X-DISCONTINUITY-SEQUENCE after the first segment"
                )
            pl.discontinuity_sequence = _int_value(value, tag, line_no)
        elif tag == "#EXT-X-VERSION":
            pl.version = _int_value(value, tag, line_no)
        elif tag == "#EXT-X-PLAYLIST-TYPE":
            if value not in ("VOD", "EVENT"):
                raise FormatError(
                    f"line {line_no}: EXT-X-PLAYLIST-TYPE {value!r} is neither VOD nor EVENT"
                )
            pl.playlist_type = value
        elif tag == "#EXT-X-ENDLIST":
            pl.endlist = True
        elif tag == "#EXT-X-INDEPENDENT-SEGMENTS":
            pl.independent_segments = True
        elif tag == "#EXT-X-DISCONTINUITY":
            pending["discontinuity"] = True
        elif tag == "#EXT-X-GAP":
            pending["gap"] = True
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            pending["program_date_time"] = parse_date_time(value, line_no)
        elif tag == "#EXT-X-BYTERANGE":
            pending["byterange"] = ByteRange.parse(value, line_no)
        elif tag == "#EXT-X-MAP":
            attrs = parse_attrs(value, line_no)
            br = attrs.get("BYTERANGE")
            pending["init"] = InitSection(
                require(attrs, "URI", "EXT-X-MAP", line_no),
                ByteRange.parse(br, line_no) if br else None,
            )
        elif tag == "#EXT-X-PART":
            attrs = parse_attrs(value, line_no)
            br = attrs.get("BYTERANGE")
            pending_parts.append(
                Part(
                    duration=to_float(
                        require(attrs, "DURATION", "EXT-X-PART", line_no), "DURATION", line_no
                    ),
                    uri=require(attrs, "URI", "EXT-X-PART", line_no),
                    independent=read_bool(attrs, "INDEPENDENT", line_no),
                    byterange=ByteRange.parse(br, line_no) if br else None,
                    gap=read_bool(attrs, "GAP", line_no),
                )
            )
        elif tag == "#EXT-X-PART-INF":
            attrs = parse_attrs(value, line_no)
            pl.part_target = to_float(
                require(attrs, "PART-TARGET", tag, line_no), "PART-TARGET", line_no
            )
        elif tag == "#EXT-X-SERVER-CONTROL":
            attrs = parse_attrs(value, line_no)
            pl.server_control = ServerControl(
                can_block_reload=read_bool(attrs, "CAN-BLOCK-RELOAD", line_no),
                part_hold_back=read_float(attrs, "PART-HOLD-BACK", line_no),
                hold_back=read_float(attrs, "HOLD-BACK", line_no),
                can_skip_until=read_float(attrs, "CAN-SKIP-UNTIL", line_no),
                can_skip_dateranges=read_bool(attrs, "CAN-SKIP-DATERANGES", line_no),
            )
        elif tag == "#EXT-X-PRELOAD-HINT":
            attrs = parse_attrs(value, line_no)
            kind = require(attrs, "TYPE", tag, line_no)
            if kind not in ("PART", "MAP"):
                raise FormatError(
                    f"line {line_no}: preload hint TYPE {kind!r} is neither PART nor MAP"
                )
            pl.preload_hints.append(
                PreloadHint(
                    kind,
                    require(attrs, "URI", tag, line_no),
                    read_int(attrs, "BYTERANGE-START", line_no),
                    read_int(attrs, "BYTERANGE-LENGTH", line_no),
                )
            )
        elif tag == "#EXT-X-RENDITION-REPORT":
            attrs = parse_attrs(value, line_no)
            pl.rendition_reports.append(
                RenditionReport(
                    require(attrs, "URI", tag, line_no),
                    read_int(attrs, "LAST-MSN", line_no),
                    read_int(attrs, "LAST-PART", line_no),
                )
            )
        elif tag == "#EXT-X-SKIP":
            attrs = parse_attrs(value, line_no)
            if pl.segments:
                raise FormatError(f"line {line_no}: EXT-X-SKIP after the first segment")
            skipped = read_int(attrs, "SKIPPED-SEGMENTS", line_no)
            if skipped is None:
                raise FormatError(f"line {line_no}: EXT-X-SKIP lacks SKIPPED-SEGMENTS")
            pl.skipped_segments = skipped
        elif tag == "#EXT-X-STREAM-INF" or tag == "#EXT-X-MEDIA":
            raise FormatError(f"line {line_no}: {tag[1:]} belongs in a master playlist")
        # other tags (KEY, DATERANGE, START...) are legal and ignored here
    if "duration" in pending:
        raise FormatError("playlist ends after #EXTINF without a segment URI")
    if not saw_target:
        raise FormatError("playlist lacks the required EXT-X-TARGETDURATION")
    pl.open_parts = pending_parts
    return pl


def check_media_playlist(pl: MediaPlaylist) -> list[str]:
    """The numeric rules of the spec, as a list of problems (empty: conforming)."""
    problems: list[str] = []
    target = pl.target_duration or 0
    for i, seg in enumerate(pl.segments):
        msn = pl.first_msn + i
        if round(seg.duration) > target:
            problems.append(
                f"segment {msn} ({seg.uri}): EXTINF {seg.duration:.3f} s exceeds target duration {target} s"
            )
        if pl.part_target is not None:
            for part in seg.parts:
                if part.duration > pl.part_target + TOLERANCE:
                    problems.append(
                        f"segment {msn}: part {part.uri} lasts {part.duration:.3f} s > PART-TARGET {pl.part_target:.3f}"
                    )
            if seg.parts and abs(sum(p.duration for p in seg.parts) - seg.duration) > 0.01 * max(
                1, len(seg.parts)
            ):
                problems.append(
                    f"segment {msn}: parts add up to {sum(p.duration for p in seg.parts):.3f} s, EXTINF says {seg.duration:.3f} s"
                )
    if pl.version is not None and pl.version < pl.needed_version():
        problems.append(
            f"EXT-X-VERSION {pl.version} is lower than the features need ({pl.needed_version()})"
        )
    has_parts = any(s.parts for s in pl.segments) or bool(pl.open_parts)
    if has_parts and pl.part_target is None:
        problems.append("EXT-X-PART without EXT-X-PART-INF")
    control = pl.server_control
    if pl.part_target is not None:
        if control is None or control.part_hold_back is None:
            problems.append("EXT-X-PART-INF without EXT-X-SERVER-CONTROL:PART-HOLD-BACK")
        elif control.part_hold_back < 2 * pl.part_target - TOLERANCE:
            problems.append(
                f"PART-HOLD-BACK {control.part_hold_back} is less than twice PART-TARGET {pl.part_target}"
            )
    if control is not None:
        if control.hold_back is not None and control.hold_back < 3 * target - TOLERANCE:
            problems.append(f"HOLD-BACK {control.hold_back} is less than 3 target durations")
        if control.can_skip_until is not None and control.can_skip_until < 6 * target - TOLERANCE:
            problems.append(
                f"CAN-SKIP-UNTIL {control.can_skip_until} is less than 6 target durations"
            )
    if pl.playlist_type == "VOD" and not pl.endlist:
        problems.append("VOD playlist without EXT-X-ENDLIST")
    return problems


def check_update(old: MediaPlaylist, new: MediaPlaylist) -> list[str]:
    """Rules between two successive loads of a live playlist (rfc8216bis 6.2.1/6.2.2):
    only append, remove from the front (never below 3 target durations, never in a
    VOD/EVENT playlist), sequence numbers never go back, the target never changes."""
    problems: list[str] = []
    if old.endlist:
        if new.identity() != old.identity():
            problems.append("playlist changed after EXT-X-ENDLIST")
        return problems
    removed = new.media_sequence > old.media_sequence
    if removed and (old.playlist_type or new.playlist_type):
        problems.append(
            f"segments were removed from a playlist of type {old.playlist_type or new.playlist_type}"
        )
    target = new.target_duration or new.needed_target_duration()
    if removed and not new.endlist and new.duration < 3 * target - TOLERANCE:
        problems.append(
            f"segments were removed although only {new.duration:.3f} s (< 3 target durations) remain"
        )
    if new.media_sequence < old.media_sequence:
        problems.append(
            f"media sequence went back from {old.media_sequence} to {new.media_sequence}"
        )
    if new.discontinuity_sequence < old.discontinuity_sequence:
        problems.append(
            f"discontinuity sequence went back from {old.discontinuity_sequence} to {new.discontinuity_sequence}"
        )
    if new.next_msn < old.next_msn:
        problems.append(
            f"playlist lost segments: it ended at {old.last_msn}, now at {new.last_msn}"
        )
    old_by_msn = {old.first_msn + i: s for i, s in enumerate(old.segments)}
    removed_disc = sum(
        1 for msn, s in old_by_msn.items() if s.discontinuity and msn < new.media_sequence
    )
    if (
        new.discontinuity_sequence != old.discontinuity_sequence + removed_disc
        and old.media_sequence <= new.media_sequence <= old.next_msn
    ):
        problems.append(
            f"discontinuity sequence is {new.discontinuity_sequence}, expected {old.discontinuity_sequence + removed_disc} "
            "after the segments that left the window"
        )
    for i, seg in enumerate(new.segments):
        before = old_by_msn.get(new.first_msn + i)
        if before is not None and (
            before.uri != seg.uri or abs(before.duration - seg.duration) > TOLERANCE
        ):
            problems.append(
                f"segment {new.first_msn + i} changed between reloads ({before.uri} -> {seg.uri})"
            )
    if new.target_duration != old.target_duration:
        problems.append(
            f"target duration changed from {old.target_duration} to {new.target_duration}"
        )
    return problems
