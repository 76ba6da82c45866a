"""Mp4Demuxer against ffprobe on files made by ffmpeg."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from mistcodecs.errors import FormatError
from mistcodecs.mp4 import Mp4Demuxer, buffer_reader, open_file
from tests.codecs_mp4.conftest import CASES, ffprobe_packets

CODEC_NAMES = {
    "h264": "H264",
    "hevc": "HEVC",
    "av1": "AV1",
    "vp9": "VP9",
    "aac": "AAC",
    "opus": "opus",
    "mp3": "MP3",
    "ac3": "AC3",
    "flac": "FLAC",
    "pcm_s16le": "PCM",
    "pcm_s16be": "PCM",
}


def _swap16(data: bytes) -> bytes:
    out = bytearray(data)
    out[0::2], out[1::2] = data[1::2], data[0::2]
    return bytes(out)


def _ms(value: str | None) -> float | None:
    return None if value in (None, "N/A") else float(value) * 1000


@pytest.mark.parametrize("name", sorted(CASES))
def test_demuxer_matches_ffprobe(media: dict[str, Path], name: str) -> None:
    if name not in media:
        pytest.skip(f"encoder for {name} not available")
    path = media[name]
    demux, fh = open_file(str(path))
    try:
        metas = demux.tracks()
        probe = ffprobe_packets(path)
        with av.open(str(path)) as container:
            streams = list(container.streams)
            assert len(metas) == len(streams)
            for meta, stream in zip(metas, streams, strict=True):
                assert meta.codec == CODEC_NAMES[stream.codec_context.codec.canonical_name]
                if meta.type == "video":
                    assert (meta.width, meta.height) == (
                        stream.codec_context.width,
                        stream.codec_context.height,
                    )
                    assert 24000 <= meta.fpks <= 26000
                else:
                    assert meta.rate == stream.codec_context.sample_rate
                    assert meta.channels == stream.codec_context.channels
                assert meta.init or meta.codec in ("MP3", "AC3", "PCM")
        for index, meta in enumerate(metas):
            table = demux.sample_table(meta.id)
            packets = probe[index]
            assert len(table) == len(packets)
            assert sum(table.keyframe) == sum("K" in p["flags"] for p in packets)
            for i, p in enumerate(packets):
                assert table.size[i] == int(p["size"])
                assert table.pos[i] == int(p["pos"])
                assert abs(table.dts[i] - _ms(p["dts_time"])) <= 1  # type: ignore[operator]
                pts = _ms(p.get("pts_time"))
                if pts is not None:
                    assert abs(table.dts[i] + table.offset[i] - pts) <= 1
                assert bool(table.keyframe[i]) == ("K" in p["flags"])
        # packets() interleaves by dts and carries the right payload bytes
        all_packets = list(demux.packets())
        assert len(all_packets) == sum(len(demux.sample_table(m.id)) for m in metas)
        assert [p.dts for p in all_packets] == sorted(p.dts for p in all_packets)
        with av.open(str(path)) as container:
            payloads = [bytes(p) for p in container.demux() if p.size and p.stream.index == 0]
        mine = [p.data for p in all_packets if p.track == metas[0].id]
        if name == "pcm_le.mov":  # the model's PCM is big-endian: swap ffmpeg's bytes
            payloads = [_swap16(d) for d in payloads]
        assert mine == payloads
    finally:
        fh.close()


def test_buffer_and_file_readers_agree(media: dict[str, Path]) -> None:
    path = media["h264_aac.mp4"]
    data = path.read_bytes()
    from_buffer = Mp4Demuxer(buffer_reader(data), len(data))
    from_file, fh = open_file(str(path))
    try:
        for meta in from_buffer.tracks():
            assert from_buffer.samples(meta.id) == from_file.samples(meta.id)
    finally:
        fh.close()


def test_seek_starts_at_keyframe(media: dict[str, Path]) -> None:
    data = media["h264_aac.mp4"].read_bytes()
    demux = Mp4Demuxer(buffer_reader(data), len(data))
    video = next(t.id for t in demux.tracks() if t.type == "video")
    first = next(p for p in demux.packets([video], start_ms=1500))
    assert first.keyframe and first.dts <= 1500
    table = demux.sample_table(video)
    later = [
        table.dts[i]
        for i in range(len(table))
        if table.keyframe[i] and first.dts < table.dts[i] <= 1500
    ]
    assert not later


def test_truncated_file_drops_missing_samples(media: dict[str, Path]) -> None:
    data = media["faststart.mp4"].read_bytes()
    cut = data[: len(data) * 2 // 3]
    demux = Mp4Demuxer(buffer_reader(cut), len(cut))
    full = Mp4Demuxer(buffer_reader(data), len(data))
    video = demux.tracks()[0].id
    assert 0 < len(demux.sample_table(video)) < len(full.sample_table(video))
    assert any("truncated" in w or "past the end" in w for w in demux.warnings)
    for p in demux.packets():
        assert len(p.data) > 0


def test_sample_table_cache_record(media: dict[str, Path]) -> None:
    import msgpack

    from mistcodecs.errors import FormatError
    from mistcodecs.mp4 import SampleTable

    data = media["h264_aac.mp4"].read_bytes()
    demux = Mp4Demuxer(buffer_reader(data), len(data))
    for meta in demux.tracks():
        table = demux.sample_table(meta.id)
        packed = msgpack.packb(table.to_record())
        again = SampleTable.from_record(msgpack.unpackb(packed))
        assert list(again) == list(table) and again.duration_ms == table.duration_ms
    broken = table.to_record()
    broken["size"] = broken["size"][:-8]
    with pytest.raises(FormatError):
        SampleTable.from_record(broken)


def test_pcm_little_endian_flag(media: dict[str, Path]) -> None:
    for name, little in (("pcm_le.mov", True), ("pcm_be.mov", False)):
        data = media[name].read_bytes()
        demux = Mp4Demuxer(buffer_reader(data), len(data))
        [meta] = demux.tracks()
        assert meta.codec == "PCM"
        assert demux.pcm_little_endian(meta.id) is little, name
    with pytest.raises(FormatError, match="no track 99"):
        demux.pcm_little_endian(99)


@pytest.mark.parametrize(
    "junk", [b"\xff" * 40, b"\x00\x00\x10\x00junk" + b"x" * 30, b"\x00\x00\x00\x04abcd" * 3]
)
def test_trailing_junk_after_the_movie_is_a_warning(media: dict[str, Path], junk: bytes) -> None:
    data = media["h264_aac.mp4"].read_bytes()
    clean = Mp4Demuxer(buffer_reader(data), len(data))
    damaged = data + junk
    demux = Mp4Demuxer(buffer_reader(damaged), len(damaged))
    assert any(f"junk at {len(data)}" in w for w in demux.warnings), demux.warnings
    for meta in clean.tracks():
        assert list(demux.sample_table(meta.id)) == list(clean.sample_table(meta.id))
    # before any moov the same damage is still an error
    moov = data.find(b"moov") - 4
    before = data[:moov] + junk
    with pytest.raises(FormatError):
        Mp4Demuxer(buffer_reader(before), len(before))
