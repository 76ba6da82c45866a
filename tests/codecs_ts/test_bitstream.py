"""H.264/HEVC/AAC helpers against what FFmpeg's MP4 muxer writes for the same streams."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest

from mistcodecs import aac, h264, hevc
from mistcodecs.bits import BitReader, BitWriter, unescape_rbsp
from mistcodecs.errors import FormatError, Truncated
from tests.codecs_ts.media import demux_all


def mp4_extradata(ts: Path, tmp_path: Path) -> list[bytes]:
    out = tmp_path / (ts.stem + ".mp4")
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-i",
        str(ts),
        "-c",
        "copy",
        "-tag:v",
        "hvc1" if "hevc" in ts.stem else "avc1",
        str(out),
    ]
    subprocess.run(cmd, check=True, timeout=60)
    with av.open(str(out)) as container:
        return [bytes(s.codec_context.extradata or b"") for s in container.streams]


@pytest.mark.parametrize("variant", ["h264_aac", "hevc_aac"])
def test_init_equals_ffmpeg_mp4(ts_files: dict[str, Path], variant: str, tmp_path: Path) -> None:
    _, tracks, _ = demux_all(ts_files[variant].read_bytes())
    video, audio = mp4_extradata(ts_files[variant], tmp_path)
    assert tracks[0].init == video
    assert tracks[1].init == audio
    if variant == "h264_aac":
        cfg, ref = h264.parse_avcc(tracks[0].init), h264.parse_avcc(video)
        assert (cfg.sps, cfg.pps, cfg.nal_length_size) == (ref.sps, ref.pps, 4)
        sps = h264.parse_sps(cfg.sps[0])
        assert (sps.width, sps.height, sps.fps, sps.profile) == (320, 240, 25.0, 100)
        assert h264.codec_string(tracks[0].init) == f"avc1.64{cfg.compat:02x}{sps.level:02x}"
        assert h264.build_avcc(cfg.sps, cfg.pps) == video
    else:
        hcfg = hevc.parse_hvcc(video)
        assert hevc.build_hvcc(hcfg.vps, hcfg.sps, hcfg.pps) == video
        hsps = hevc.parse_sps(hcfg.sps[0])
        assert (hsps.width, hsps.height, hsps.profile) == (320, 180, 1)
        assert hevc.codec_string(video) == f"hvc1.1.6.L{hsps.level}.90"
    asc = aac.parse_asc(tracks[1].init)
    assert aac.build_asc(asc.object_type, asc.rate, asc.channels) == audio
    assert aac.codec_string(audio) == "mp4a.40.2"


def test_cropped_sps(ts_files: dict[str, Path]) -> None:
    _, tracks, _ = demux_all(ts_files["h264_mp3"].read_bytes())
    sps = h264.parse_sps(h264.parse_avcc(tracks[0].init).sps[0])
    assert (sps.width, sps.height) == (170, 138)


def test_annexb_avcc_round_trip() -> None:
    nals = [b"\x09\xf0", b"\x67\x64\x00\x1f", b"\x68\xee", b"\x65" + b"\x00\x00\x03\x01" * 5]
    annexb = b"\x00\x00\x00\x01" + b"\x00\x00\x01".join(nals) + b"\x00\x00"
    assert h264.split_annexb(annexb) == nals
    avcc = h264.annexb_to_avcc(annexb)
    assert avcc[:4] == b"\x00\x00\x00\x02"
    assert h264.split_annexb(h264.avcc_to_annexb(avcc)) == nals
    assert h264.is_keyframe_avcc(avcc)
    assert not h264.is_keyframe_avcc(h264.nals_to_avcc(nals[:3]))
    with pytest.raises(Truncated):
        h264.avcc_to_annexb(avcc[:-1])


def test_adts_split_and_build() -> None:
    asc = aac.build_asc(2, 44100, 2)
    assert aac.parse_asc(asc) == aac.Asc(2, 44100, 2, 4, 2)
    frames = [bytes([n]) * (10 + n) for n in range(5)]
    stream = b"".join(aac.adts_header(asc, len(f)) + f for f in frames)
    parsed = aac.parse_adts(stream)
    assert [f.payload for f in parsed] == frames
    assert all(f.asc() == asc and f.rate == 44100 for f in parsed)
    assert b"".join(bytes(f) for f in parsed) == stream
    splitter = aac.AdtsSplitter()
    got = [f.payload for i in range(len(stream)) for f in splitter.feed(stream[i : i + 1])]
    assert got == frames
    junky = aac.AdtsSplitter()
    assert [
        f.payload for f in junky.feed(b"\x00\xff\x12" + stream)
    ] == frames and junky.skipped == 3
    with pytest.raises(Truncated):
        aac.parse_adts(stream[:-1])
    with pytest.raises(FormatError):
        aac.parse_adts(b"x" + stream)


def test_bits() -> None:
    bw = BitWriter()
    for value, n in ((1, 1), (0b010, 3), (0b011, 3), (0b00100, 5), (0xABC, 12)):
        bw.write(value, n)
    br = BitReader(bw.to_bytes())
    assert (br.read(1), br.ue(), br.se(), br.se(), br.read(12)) == (
        1,
        1,
        -1,
        2,
        0xABC,
    )  # codeNums 1, 2, 3
    with pytest.raises(Truncated):
        br.read(8)
    assert unescape_rbsp(b"\x00\x00\x03\x01\x00\x00\x03") == b"\x00\x00\x01\x00\x00"


def test_sps_errors_are_format_errors() -> None:
    with pytest.raises(FormatError):
        h264.parse_sps(b"\x68\x00")
    with pytest.raises(FormatError):
        hevc.parse_sps(b"\x42\x01\x01")
    with pytest.raises(FormatError):
        h264.parse_avcc(b"\x02" * 10)
