"""SRT and WebVTT documents of a subtitle track (``/<s>.srt``, ``/<s>.vtt``,
``/<s>.webvtt``: MistServer's MistOutSubRip), as a sans-IO muxer.

A subtitle packet is a 4-byte big-endian cue duration (ms) and UTF-8 text; its dts is
the cue start (:mod:`shm.model`). Each packet becomes one cue, numbered for SRT.
``-->`` cannot stand in cue text (WebVTT escapes ``& < >`` as entities, SRT shortens
the arrow) and a blank line would end a cue early, so blank lines are dropped; a packet
with no text makes no cue.
"""

from __future__ import annotations

from outputs.formats import FormatUnavailable
from shm.model import Packet, TrackMeta


def timestamp(ms: int, webvtt: bool) -> str:
    """``HH:MM:SS,mmm`` (SRT) or ``HH:MM:SS.mmm`` (WebVTT)."""
    h, rest = divmod(max(0, ms), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{'.' if webvtt else ','}{ms:03d}"


class SubtitleMuxer:
    """One subtitle track as an SRT or WebVTT document (other tracks are ignored)."""

    def __init__(self, tracks: list[TrackMeta], webvtt: bool) -> None:
        subs = [t for t in tracks if t.codec == "subtitle"]
        if not subs:
            raise FormatUnavailable("subtitle output needs a subtitle track")
        self.track = subs[0].id
        self.webvtt = webvtt
        self.cues = 0

    def header(self) -> bytes:
        return b"WEBVTT\n\n" if self.webvtt else b""

    def packet(self, p: Packet) -> bytes:
        data = bytes(p.data)
        if p.track != self.track or len(data) < 4:
            return b""
        duration = int.from_bytes(data[:4], "big")
        text = data[4:].decode("utf-8", errors="replace").replace("\r\n", "\n")
        if self.webvtt:
            text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        else:
            text = text.replace("-->", "->")
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return b""
        self.cues += 1
        number = "" if self.webvtt else f"{self.cues}\n"
        start, end = timestamp(p.dts, self.webvtt), timestamp(p.dts + max(1, duration), self.webvtt)
        return (f"{number}{start} --> {end}\n" + "\n".join(lines) + "\n\n").encode()

    def end(self) -> bytes:
        return b""
