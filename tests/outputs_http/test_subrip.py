"""The SRT/WebVTT muxer (``/<s>.srt``, ``/<s>.vtt``): model subtitle packets in, a
document ffmpeg reads back with the same cues out, awkward text defused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from outputs.formats import REGISTRY, FormatUnavailable
from outputs.http.subrip import SubtitleMuxer
from shm.model import Packet, TrackMeta

SUB = TrackMeta(3, "meta", "subtitle")
VIDEO = TrackMeta(1, "video", "H264")


def _packet(start: int, end: int, text: str, track: int = 3) -> Packet:
    return Packet(track, start, 0, True, (end - start).to_bytes(4, "big") + text.encode())


def _ffmpeg_text(path: Path) -> str:
    """The document as ffmpeg re-writes it as SRT (its own parser and writer)."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "srt", "-"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    return out.replace("\r\n", "\n")


@pytest.mark.parametrize("webvtt", [False, True])
def test_documents_read_back_by_ffmpeg(webvtt: bool, tmp_path: Path) -> None:
    mux = SubtitleMuxer([VIDEO, SUB], webvtt=webvtt)
    body = mux.header()
    for p in (
        _packet(500, 1500, "eins"),
        Packet(1, 600, 0, True, b"\x00\x00\x00\x05video"),  # not the subtitle track
        _packet(2000, 3000, "a --> b\r\n\r\nzwei"),  # arrow and blank line defused
        _packet(3000, 3100, "   "),  # no text, no cue
        _packet(3_725_004, 3_726_000, "spät"),  # hours
    ):
        body += mux.packet(p)
    body += mux.end()
    doc = tmp_path / ("s.vtt" if webvtt else "s.srt")
    doc.write_bytes(body)
    assert _ffmpeg_text(doc) == (
        "1\n00:00:00,500 --> 00:00:01,500\neins\n\n"
        f"2\n00:00:02,000 --> 00:00:03,000\n{'a --> b' if webvtt else 'a -> b'}\nzwei\n\n"
        "3\n01:02:05,004 --> 01:02:06,000\nspät\n\n"
    )


def test_needs_a_subtitle_track_and_is_chosen_by_default() -> None:
    with pytest.raises(FormatUnavailable):
        SubtitleMuxer([VIDEO], webvtt=True)
    spec = REGISTRY.by_ext["vtt"]
    tracks = {1: VIDEO, 3: SUB, 4: TrackMeta(4, "meta", "subtitle", lang="de")}
    assert [t.id for t in spec.select(tracks, {})] == [3]
    assert [t.id for t in spec.select(tracks, {"subtitle": "de"})] == [4]
    assert [t.id for t in REGISTRY.by_ext["mp4"].select(tracks, {})] == [1]
