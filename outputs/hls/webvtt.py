"""WebVTT segments for HLS subtitle renditions (RFC 8216 3.5), from the model's subtitle packets.

A subtitle packet is a 4-byte big-endian cue duration (ms) followed by UTF-8 text; its
dts is the cue start. Each segment holds the cues that overlap it (a cue spanning a
boundary is repeated, as the spec allows; players drop duplicates), behind an
``X-TIMESTAMP-MAP`` that ties cue time 0 to the media's first timestamp: MPEG-TS
segments start their 90 kHz clock at :data:`mistcodecs.ts.mux.START_90K`, fMP4 ones at 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mistcodecs.errors import FormatError
from shm.model import Packet

CUE_LOOKBACK_MS = 30_000  # how far before a segment a cue may start and still overlap it


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str

    @classmethod
    def from_packet(cls, p: Packet) -> Cue:
        data = bytes(p.data)
        if len(data) < 4:
            raise FormatError(f"subtitle packet at {p.dts} ms is {len(data)} bytes, needs 4+")
        duration = int.from_bytes(data[:4], "big")
        text = data[4:].decode("utf-8", errors="replace").replace("\r\n", "\n").strip("\n")
        return cls(p.dts, p.dts + max(1, duration), text)


def timestamp(ms: int) -> str:
    ms = max(0, ms)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def segment(cues: Iterable[Cue], start_ms: int, end_ms: int, mpegts: int) -> bytes:
    """One WebVTT segment with every cue overlapping ``[start_ms, end_ms)``."""
    lines = ["WEBVTT", f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000", ""]
    for cue in cues:
        if cue.end_ms <= start_ms or cue.start_ms >= end_ms or not cue.text:
            continue
        # "-->" cannot appear in cue text; a blank line would end the cue early
        text = "\n".join(line for line in cue.text.replace("-->", "->").split("\n") if line)
        lines += [f"{timestamp(cue.start_ms)} --> {timestamp(cue.end_ms)}", text, ""]
    return ("\n".join(lines) + "\n").encode()


def cues(packets: Iterable[Packet]) -> list[Cue]:
    out: list[Cue] = []
    for p in packets:
        try:
            out.append(Cue.from_packet(p))
        except FormatError:
            continue  # a malformed cue is left out, the rest of the segment stays
    return out
