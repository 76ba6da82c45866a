"""EbmlDemuxer against ffprobe on files made by ffmpeg."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mistcodecs.ebml import EbmlDemuxer
from mistcodecs.errors import FormatError, Truncated
from shm.model import Packet, TrackMeta
from tests.codecs_ebml.media import (
    FFPROBE_CODEC,
    make_subtitled,
    probe_packets,
    probe_streams,
    split,
)

NAMES = ["vp9_opus", "vp8_vorbis", "h264_aac", "hevc_ac3", "pcm", "mp3_in_mkv"]


def demux(data: bytes, chunk: int = 0) -> tuple[EbmlDemuxer, list[TrackMeta | Packet]]:
    d = EbmlDemuxer()
    events: list[TrackMeta | Packet] = []
    if chunk:
        for i in range(0, len(data), chunk):
            events += d.feed(data[i : i + chunk])
    else:
        events += d.feed(data)
    events += d.end()
    return d, events


def check_against_ffprobe(path: Path, events: list[TrackMeta | Packet]) -> None:
    tracks, packets = split(events)
    streams = probe_streams(path)
    probed = probe_packets(path)
    assert len(tracks) == len(streams)
    for t, st in zip(tracks, streams, strict=True):
        idx = int(st["index"])
        if t.codec in FFPROBE_CODEC:
            assert st["codec_name"] == FFPROBE_CODEC[t.codec]
        if t.type == "video":
            assert (t.width, t.height) == (st["width"], st["height"])
            assert t.fpks == 25000
        if t.type == "audio":
            assert t.rate == int(st["sample_rate"])
            assert t.channels == st["channels"]
        mine = packets[t.id]
        theirs = [p for p in probed if p.stream == idx]
        assert len(mine) == len(theirs) > 0
        for a, b in zip(mine, theirs, strict=True):
            assert len(a.data) == b.size
            if t.type == "video":
                assert a.keyframe == b.keyframe
            assert b.pts_ms is not None
            assert abs(a.pts - b.pts_ms) <= 1, (t.codec, a.pts, b.pts_ms)
        dts = [p.dts for p in mine]
        assert dts == sorted(dts), "decode times must not go backwards"
        assert all(p.offset >= 0 for p in mine)


@pytest.mark.parametrize("name", NAMES)
def test_matches_ffprobe(ebml_media: dict[str, Path], name: str) -> None:
    path = ebml_media[name]
    d, events = demux(path.read_bytes())
    check_against_ffprobe(path, events)
    assert d.doc_type == ("webm" if path.suffix == ".webm" else "matroska")


def test_av1(av1_file: Path) -> None:
    _d, events = demux(av1_file.read_bytes())
    tracks, _ = split(events)
    assert tracks[0].codec == "AV1" and tracks[0].init[:1] == b"\x81"  # av1C marker+version
    check_against_ffprobe(av1_file, events)


def test_bframes_get_offsets(ebml_media: dict[str, Path]) -> None:
    _d, events = demux(ebml_media["h264_aac"].read_bytes())
    tracks, packets = split(events)
    video = packets[tracks[0].id]
    assert any(p.offset > 0 for p in video)
    assert tracks[0].init[0] == 1  # avcC configurationVersion
    assert tracks[1].codec == "AAC" and len(tracks[1].init) >= 2


def test_pcm_is_big_endian(ebml_media: dict[str, Path]) -> None:
    data = ebml_media["pcm"].read_bytes()
    _d, events = demux(data)
    _tracks, packets = split(events)
    first = bytes(packets[1][3].data)
    # the little-endian original appears in the file; ours has every sample byte-swapped
    swapped = bytes(b for i in range(0, len(first), 2) for b in (first[i + 1], first[i]))
    assert swapped in data and first[:64] not in data


@pytest.mark.parametrize("name", ["vp9_opus", "h264_aac"])
def test_byte_by_byte_and_chunks(ebml_media: dict[str, Path], name: str) -> None:
    data = ebml_media[name].read_bytes()
    _d, whole = demux(data)
    for chunk in (1, 7, 4096):
        _d2, parts = demux(data, chunk)
        assert [
            (p.track, p.dts, p.offset, bytes(p.data)) for p in parts if isinstance(p, Packet)
        ] == [(p.track, p.dts, p.offset, bytes(p.data)) for p in whole if isinstance(p, Packet)]


def test_trailing_junk_is_ignored(ebml_media: dict[str, Path]) -> None:
    data = ebml_media["vp9_opus"].read_bytes()
    _d, whole = demux(data)
    d, junk = demux(data + b"\x00garbage" * 10)
    assert len(junk) == len(whole)
    assert d.trailing_bytes == 80


def test_truncated_raises_at_end(ebml_media: dict[str, Path]) -> None:
    data = ebml_media["h264_aac"].read_bytes()
    d = EbmlDemuxer()
    got = d.feed(data[: len(data) // 2])
    assert any(isinstance(e, Packet) for e in got)
    with pytest.raises(Truncated, match="at byte"):
        d.end()


def test_not_ebml() -> None:
    with pytest.raises(FormatError, match="not EBML"):
        EbmlDemuxer().feed(b"\x42" * 64)


def test_positions_reload_and_cues(ebml_media: dict[str, Path]) -> None:
    data = ebml_media["h264_aac"].read_bytes()
    d, events = demux(data)
    packets = [e for e in events if isinstance(e, Packet)]
    assert len(d.positions) == len(packets)
    for ref, p in zip(d.positions, packets, strict=True):
        again = d.reload(ref, data[ref.pos : ref.pos + ref.size])
        assert (again.track, again.dts, again.offset, again.keyframe, bytes(again.data)) == (
            p.track,
            p.dts,
            p.offset,
            p.keyframe,
            bytes(p.data),
        )
    assert d.cues, "ffmpeg writes Cues for seekable output"
    for cue in d.cues:
        assert data[cue.cluster_pos : cue.cluster_pos + 4] == b"\x1f\x43\xb6\x75"
        keys = [
            r
            for r in d.positions
            if r.track == cue.track and r.keyframe and r.pos > cue.cluster_pos
        ]
        assert keys and abs(keys[0].dts + keys[0].offset - cue.time_ms) <= 1


@pytest.mark.parametrize("fmt", ["srt", "webvtt"])
def test_subtitles(tmp_path: Path, fmt: str) -> None:
    path = make_subtitled(tmp_path / "subs", fmt)
    _d, events = demux(path.read_bytes())
    tracks, packets = split(events)
    subs = [t for t in tracks if t.codec == "subtitle"]
    assert len(subs) == 1 and subs[0].type == "meta"
    # the model's payload: 4-byte big-endian cue duration (ms), then the UTF-8 text
    cues = [bytes(p.data) for p in packets[subs[0].id]]
    assert [c[4:].decode().strip() for c in cues] == ["Hello", "World"]
    assert [struct.unpack_from(">I", c)[0] for c in cues] == [700, 500]
    assert [p.pts for p in packets[subs[0].id]] == [200, 1000]
    probed = [p for p in probe_packets(path) if p.stream == 1]
    assert [round(p.pts_ms or 0) for p in probed] == [200, 1000]


def test_seek_to_cue(ebml_media: dict[str, Path]) -> None:
    data = ebml_media["h264_aac"].read_bytes()
    d, events = demux(data)
    full = [e for e in events if isinstance(e, Packet)]
    cue = d.cues[2]
    d2 = EbmlDemuxer()
    head = d2.feed(data[: d.cues[0].cluster_pos])  # header, Info, Tracks
    assert [t.codec for t in head if isinstance(t, TrackMeta)] == ["H264", "AAC"]
    d2.seek(cue.cluster_pos)
    tail = [e for e in d2.feed(data[cue.cluster_pos :]) + d2.end() if isinstance(e, Packet)]
    first = next(p for p in tail if p.track == cue.track)  # video is held back for dts
    assert first.track == cue.track and first.keyframe and first.pts == cue.time_ms
    for tid in (1, 2):
        mine = [(p.pts, bytes(p.data)) for p in tail if p.track == tid]
        ref = [(p.pts, bytes(p.data)) for p in full if p.track == tid]
        assert mine == ref[len(ref) - len(mine) :] and len(mine) < len(ref)
    video = [p for p in tail if p.track == 1]
    assert [p.dts for p in video] == sorted(p.dts for p in video) and min(
        p.offset for p in video
    ) >= 0


def test_unknown_size_cluster_in_sized_segment() -> None:
    from mistcodecs.ebml import EbmlMuxer
    from mistcodecs.ebml import schema as s
    from mistcodecs.ebml.element import element

    m = EbmlMuxer([TrackMeta(1, "audio", "MP3", rate=44100, channels=1)], webm=False)
    head = m.header()
    seg = head.index(s.SEGMENT.to_bytes(4, "big"))
    body = head[seg + 12 :] + b"".join(
        m.packet(Packet(1, t, 0, True, b"x")) for t in (0, 6000, 7000)
    )
    data = head[:seg] + element(s.SEGMENT, body) + b"\x00junk"
    d, events = demux(data)
    assert [p.pts for p in events if isinstance(p, Packet)] == [0, 6000, 7000]
    assert d.trailing_bytes == 5
