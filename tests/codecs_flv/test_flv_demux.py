"""FlvDemuxer against FFmpeg's reading of the same files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mistcodecs.errors import FormatError, Truncated
from mistcodecs.flv import (
    FlvDemuxer,
    FlvHeader,
    FlvTag,
    FlvTagReader,
    iter_tags,
    make_tag,
    parse_audio_specific_config,
)
from shm.model import Packet, TrackMeta
from tests.codecs_flv.media import pyav_packets

EXPECTED = {
    "h264_aac": ("H264", "AAC"),
    "h264_mp3": ("H264", "MP3"),
    "hevc_aac": ("HEVC", "AAC"),
    "vp9_opus": ("VP9", "opus"),
    "av1_opus": ("AV1", "opus"),
}


def demux(data: bytes, step: int = 0) -> tuple[list[TrackMeta], list[Packet], FlvDemuxer]:
    d = FlvDemuxer()
    items = []
    if step:
        for i in range(0, len(data), step):
            items += d.feed(data[i : i + step])
    else:
        items = d.feed(data)
    items += d.end()
    return (
        [i for i in items if isinstance(i, TrackMeta)],
        [i for i in items if isinstance(i, Packet)],
        d,
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_matches_ffmpeg(flv_files: dict[str, Path], name: str) -> None:
    path = flv_files[name]
    tracks, packets, d = demux(path.read_bytes())
    assert [(t.id, t.type, t.codec) for t in tracks] == [
        (1, "video", EXPECTED[name][0]),
        (2, "audio", EXPECTED[name][1]),
    ]
    ref = pyav_packets(path)
    for tid, kind in ((1, "video"), (2, "audio")):
        ours = [(p.dts, p.pts, p.keyframe) for p in packets if p.track == tid]
        if kind == "audio":  # FFmpeg marks every audio packet a keyframe, as we do
            assert ours == ref[kind]
        else:
            assert [(dts, pts) for dts, pts, _ in ours] == [(dts, pts) for dts, pts, _ in ref[kind]]
            assert [k for *_, k in ours] == [k for *_, k in ref[kind]]
            assert sum(k for *_, k in ours) >= 1
    video = tracks[0]
    assert video.init, "codec config expected"
    assert d.metadata.get("width") == 160.0
    assert video.width == 160 and video.height == 120
    if name == "h264_aac":
        assert any(p.offset > 0 for p in packets if p.track == 1), (
            "B-frames give composition offsets"
        )
        assert tracks[1].rate == 44100 and tracks[1].channels == 1


def test_feeding_byte_by_byte_is_the_same(flv_files: dict[str, Path]) -> None:
    data = flv_files["h264_aac"].read_bytes()
    whole = demux(data)
    for step in (1, 7, 4096):
        again = demux(data, step)
        assert again[0] == whole[0]
        assert [(p.track, p.dts, p.offset, p.keyframe, p.data) for p in again[1]] == [
            (p.track, p.dts, p.offset, p.keyframe, p.data) for p in whole[1]
        ]


def test_tag_offsets_allow_reloading_by_position(flv_files: dict[str, Path]) -> None:
    data = flv_files["hevc_aac"].read_bytes()
    tags = list(iter_tags(data))
    assert tags[0].offset == 13
    for tag in tags:
        again = FlvTag.parse(data, tag.offset)
        assert again == tag
        assert bytes(tag) == data[tag.offset : tag.offset + tag.size]
        assert tag.prev_size_ok
    assert tags[-1].offset + tags[-1].size == len(data)
    reader = FlvTagReader()
    fed = [t for t in reader.feed(data) if isinstance(t, FlvTag)]
    assert [t.offset for t in fed] == [t.offset for t in tags]


def test_truncation_and_junk(flv_files: dict[str, Path]) -> None:
    data = flv_files["h264_mp3"].read_bytes()
    d = FlvDemuxer()
    d.feed(data[:-5])
    with pytest.raises(Truncated, match="truncated at byte"):
        d.end()
    d = FlvDemuxer()
    with pytest.raises(FormatError, match="unknown FLV tag type"):
        d.feed(data + b"\x55" * 40)
    with pytest.raises(FormatError, match="not an FLV file"):
        FlvDemuxer().feed(b"RIFF" + data[4:])
    with pytest.raises(Truncated):
        FlvDemuxer().end()


def test_header_and_tag_records() -> None:
    h = FlvHeader(has_audio=False, has_video=True)
    assert FlvHeader.parse(bytes(h)) == h
    raw = make_tag(9, 0x12345678, b"\x17\x01\x00\x00\x00", b"abc")
    tag = FlvTag.parse(raw)
    assert (tag.type, tag.timestamp, tag.body, tag.prev_size) == (
        9,
        0x12345678,
        b"\x17\x01\x00\x00\x00abc",
        19,
    )
    assert bytes(tag) == raw
    with pytest.raises(Truncated):
        FlvTag.parse(raw[:-1])
    assert parse_audio_specific_config(bytes.fromhex("1210")) == (2, 44100, 2)


def test_frames_before_config_are_dropped() -> None:
    body = make_tag(9, 0, b"\x17\x01\x00\x00\x00\x00\x00\x00\x01\x65")
    d = FlvDemuxer()
    assert d.feed(bytes(FlvHeader()) + body) == []
    assert d.decoder.dropped == 1


def test_pcm_is_converted_to_big_endian() -> None:
    # format 3 (PCM LE), 44.1 kHz, 16 bit, mono
    body = bytes(((3 << 4) | (3 << 2) | 2,)) + b"\x01\x02\x03\x04"
    items = FlvDemuxer().feed(bytes(FlvHeader(True, False)) + make_tag(8, 5, body))
    assert isinstance(items[0], TrackMeta) and (
        items[0].codec,
        items[0].rate,
        items[0].size,
        items[0].channels,
    ) == ("PCM", 44100, 16, 1)
    assert isinstance(items[1], Packet) and items[1].data == b"\x02\x01\x04\x03"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.integers(0, 3))
def test_fuzz_only_format_errors(data: bytes, mode: int) -> None:
    prefix = bytes(FlvHeader()) if mode else b""
    if mode == 2:
        prefix += make_tag(9, 0, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff")
    d = FlvDemuxer()
    try:
        d.feed(prefix + data)
        d.end()
    except FormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_real_file(flv_files: dict[str, Path], data: st.DataObject) -> None:
    raw = bytearray(flv_files["h264_aac"].read_bytes()[:3000])
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        demux(bytes(raw))
    except FormatError:
        pass


@pytest.mark.parametrize("name", ["h264_aac", "hevc_aac"])
def test_geometry_from_sps_without_metadata(flv_files: dict[str, Path], name: str) -> None:
    data = flv_files[name].read_bytes()
    stripped = bytes(FlvHeader()) + b"".join(bytes(t) for t in iter_tags(data) if t.type != 18)
    tracks, _, d = demux(stripped)
    assert d.metadata == {}
    assert (tracks[0].width, tracks[0].height) == (160, 120)
    assert tracks[1].rate in (44100, 48000) and tracks[1].channels in (1, 2)
