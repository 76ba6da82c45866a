"""TsDemuxer against FFmpeg's reading of the same files (via PyAV)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mistcodecs.ts import TsDemuxer
from mistcodecs.ts.pes import TS_MASK
from mistcodecs.ts.psi import Pmt
from shm.model import TrackMeta
from tests.codecs_ts.media import CODEC_NAMES, demux_all, make_ts, reference


def check_against_reference(
    path: Path,
    demuxer: TsDemuxer,
    tracks: list[TrackMeta],
    packets: dict,
    *,
    origin: int | None = None,
) -> None:
    refs = reference(path)
    assert [t.codec for t in tracks] == [CODEC_NAMES[r.codec] for r in refs]
    assert [t.id for t in tracks] == list(range(1, len(refs) + 1))
    base = demuxer.origin if origin is None else origin
    assert base is not None
    for meta, ref in zip(tracks, refs, strict=True):
        got = packets[meta.id]
        assert len(got) == len(ref.pts), f"{meta.codec}: frame count"
        if meta.type == "video":
            assert (meta.width, meta.height) == (ref.width, ref.height)
            assert [p.keyframe for p in got] == ref.keys
            assert got[0].keyframe
        else:
            assert (meta.rate, meta.channels) == (ref.rate, ref.channels)
        for p, rpts, rdts in zip(got, ref.pts, ref.dts, strict=True):
            assert abs(p.pts - ((rpts - base) & TS_MASK) / 90) <= 1, (
                f"{meta.codec} pts {p.pts} vs {rpts}"
            )
            assert abs(p.dts - ((rdts - base) & TS_MASK) / 90) <= 1, (
                f"{meta.codec} dts {p.dts} vs {rdts}"
            )
    assert demuxer.problems == []
    assert demuxer.cc_errors == 0


@pytest.mark.parametrize(
    "variant", ["h264_aac", "hevc_aac", "h264_mp3", "h264_ac3", "h264_eac3", "h264_opus"]
)
def test_whole_file_matches_ffmpeg(ts_files: dict[str, Path], variant: str) -> None:
    path = ts_files[variant]
    demuxer, tracks, packets = demux_all(path.read_bytes())
    check_against_reference(path, demuxer, tracks, packets)


@pytest.mark.parametrize("variant", ["h264_aac", "h264_ac3"])
def test_random_chunks_give_identical_output(ts_files: dict[str, Path], variant: str) -> None:
    data = ts_files[variant].read_bytes()
    _, tracks, packets = demux_all(data)
    rng = random.Random(7)
    chunks = [rng.randint(1, 3000) for _ in range(200)]
    _, tracks2, packets2 = demux_all(data, chunks)
    assert tracks2 == tracks
    assert packets2 == packets


def test_byte_by_byte(tmp_path: Path) -> None:
    path = make_ts(tmp_path / "small.ts", "h264_aac", seconds=0.3)
    data = path.read_bytes()
    demuxer, tracks, packets = demux_all(data, [1] * len(data))
    check_against_reference(path, demuxer, tracks, packets)


def test_junk_is_skipped_and_counted(ts_files: dict[str, Path]) -> None:
    data = ts_files["h264_aac"].read_bytes()
    _, tracks, packets = demux_all(data)
    cut = 188 * 300
    damaged = b"junk\x47junk" + data[:cut] + b"\x00\x47\x11" * 50 + data[cut:] + b"trailing"
    demuxer, tracks2, packets2 = demux_all(damaged)
    assert tracks2 == tracks
    assert {k: len(v) for k, v in packets2.items()} == {k: len(v) for k, v in packets.items()}
    assert demuxer.splitter.sync_losses == 2
    assert any("lost sync" in p for p in demuxer.problems)
    assert any("truncated packet" in p for p in demuxer.problems)


def test_dropped_packet_is_a_cc_error(ts_files: dict[str, Path]) -> None:
    data = ts_files["h264_aac"].read_bytes()
    _, _, packets = demux_all(data)
    pids = TsDemuxer()
    pids.feed(data[: 188 * 50])
    video_pid = pids.track_pids()[1]
    # drop the 20th video packet after the first 100 packets
    seen = 0
    for n in range(100, len(data) // 188):
        pkt = data[n * 188 : n * 188 + 188]
        if ((pkt[1] & 0x1F) << 8 | pkt[2]) == video_pid:
            seen += 1
            if seen == 20:
                break
    damaged = data[: n * 188] + data[n * 188 + 188 :]
    demuxer, _, packets2 = demux_all(damaged)
    assert demuxer.cc_errors == 1
    assert f"PID {video_pid}: continuity counter" in demuxer.problems[0]
    assert len(packets2[1]) == len(packets[1])


def test_timestamp_wrap(tmp_path: Path) -> None:
    # 2**33 ticks = 95443.7 s: this file's timestamps wrap a second in
    path = make_ts(tmp_path / "wrap.ts", "h264_aac", extra=["-output_ts_offset", "95441.9"])
    demuxer, tracks, packets = demux_all(path.read_bytes())
    check_against_reference(path, demuxer, tracks, packets)
    dts = [p.dts for p in packets[1]]
    assert dts == sorted(dts) and dts[-1] - dts[0] > 1800


def test_positions_allow_reload(ts_files: dict[str, Path]) -> None:
    data = ts_files["h264_aac"].read_bytes()
    demuxer = TsDemuxer()
    events = demuxer.feed(data)
    positions = list(demuxer.positions)
    events += demuxer.end()
    positions += demuxer.positions
    assert len(positions) == len(events)
    video = [
        (pos, ev)
        for pos, ev in zip(positions, events, strict=True)
        if not isinstance(ev, TrackMeta) and ev.track == 1
    ]
    keys = [(pos, ev) for pos, ev in video if ev.keyframe]
    pos, key = keys[1]
    assert pos % 188 == 0
    demuxer.seek(pos)
    again = [e for e in demuxer.feed(data[pos:]) + demuxer.end() if not isinstance(e, TrackMeta)]
    again_video = [e for e in again if e.track == 1]
    assert again_video[0] == key
    assert again_video == [ev for _, ev in video[video.index((pos, key)) :]]


def with_private_audio(data: bytes, descriptors: bytes = b"") -> bytes:
    """The file with its audio stream re-declared as PES private data (type 0x06)
    carrying ``descriptors``, as FFmpeg's m2ts mode or a DVB muxer write it."""
    out = bytearray()
    for k in range(0, len(data), 188):
        pkt = data[k : k + 188]
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        if pid == 0x1000 and pkt[1] & 0x40:  # FFmpeg's PMT PID, section start
            start = 5 + pkt[4]
            length = ((pkt[start + 1] & 0x0F) << 8) | pkt[start + 2]
            pmt = Pmt.parse(pkt[start : start + 3 + length])
            for s in pmt.streams:
                if s.stream_type in (0x0F, 0x81):
                    s.stream_type, s.descriptors = 0x06, descriptors
            section = bytes(pmt)
            pkt = pkt[:start] + section + b"\xff" * (188 - start - len(section))
        out += pkt
    return bytes(out)


@pytest.mark.parametrize(
    ("variant", "descriptors"),
    [
        ("h264_aac", b""),  # nothing names it: ADTS sync in the first PES
        ("h264_aac", b"\x7c\x01\x50"),  # DVB AAC_descriptor
        ("h264_ac3", b"\x05\x04AC-3"),  # registration descriptor
        ("h264_ac3", b"\x6a\x01\x00"),  # DVB AC-3 descriptor
    ],
)
def test_audio_in_private_data_pes(
    ts_files: dict[str, Path], variant: str, descriptors: bytes
) -> None:
    path = ts_files[variant]
    expected = demux_all(path.read_bytes())
    demuxer, tracks, packets = demux_all(with_private_audio(path.read_bytes(), descriptors))
    assert [t.codec for t in tracks] == [t.codec for t in expected[1]]
    assert demuxer.pmts and 0x06 in {
        s.stream_type for p in demuxer.pmts.values() for s in p.streams
    }
    for meta in expected[1]:
        assert [(p.dts, p.data) for p in packets[meta.id]] == [
            (p.dts, p.data) for p in expected[2][meta.id]
        ]
    assert not demuxer.problems


def test_private_data_that_is_not_audio_is_ignored(ts_files: dict[str, Path]) -> None:
    data = bytearray(with_private_audio(ts_files["h264_aac"].read_bytes()))
    for k in range(0, len(data), 188):  # scramble every ADTS sync word in the audio PID
        if ((data[k + 1] & 0x1F) << 8 | data[k + 2]) == 0x101:
            data[k + 4 : k + 188] = data[k + 4 : k + 188].replace(b"\xff\xf1", b"\x00\xf1")
    demuxer, tracks, _ = demux_all(bytes(data))
    assert [t.codec for t in tracks] == ["H264"]
    assert demuxer.track_pids() == {1: 0x100}
