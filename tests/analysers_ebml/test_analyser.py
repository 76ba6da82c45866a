"""MistAnalyserEBML on ffmpeg-made files, our own muxer's output, and damaged inputs."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from analysers.common import EXIT_OK, EXIT_PROBLEMS, run
from analysers.ebml import EbmlAnalyser
from mistcodecs.ebml import EbmlMuxer
from mistcodecs.ebml import schema as s
from mistcodecs.ebml.element import element, encode_size, uint_element, unknown_size_master
from shm.model import Packet, TrackMeta
from tests.codecs_ebml.media import FFMPEG, make, probe_packets, probe_streams


@pytest.fixture(scope="module")
def h264_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make(tmp_path_factory.mktemp("an") / "h264_aac", "h264_aac")


@pytest.fixture(scope="module")
def small_webm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("an") / "small.webm"
    cmd = [
        FFMPEG,
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=10",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000",
    ]
    cmd += [
        "-t",
        "0.5",
        "-c:v",
        "libvpx",
        "-b:v",
        "50k",
        "-c:a",
        "libopus",
        "-b:a",
        "16k",
        out.as_posix(),
    ]
    subprocess.run(cmd, check=True)
    return out


def analyse(data: bytes, detail: int = 2, as_json: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    analyser = EbmlAnalyser(detail=detail, as_json=as_json, out=out)
    chunks = iter([data[i : i + 4096] for i in range(0, len(data), 4096)])
    return run(analyser, chunks, validate=False, timeout=0), out.getvalue()


def cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "analysers.ebml", *args, path.as_posix()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_cli_json_agrees_with_ffprobe(h264_file: Path) -> None:
    res = cli(h264_file, "--json", "-D", "3")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[-1].startswith("EBML: valid")
    records = [json.loads(line) for line in lines[:-1]]
    tracks = [r for r in records if "codec" in r and "track" in r and "type" in r]
    streams = probe_streams(h264_file)
    assert [t["codec"] for t in tracks] == ["H264", "AAC"]
    assert [st["codec_name"] for st in streams] == ["h264", "aac"]
    assert tracks[0]["width"] == streams[0]["width"]
    probed = probe_packets(h264_file)
    timelines = {r["timeline"]: r for r in records if "timeline" in r}
    blocks = [r for r in records if "block" in r]
    for index, tid in enumerate((1, 2)):
        theirs = [p for p in probed if p.stream == index]
        assert timelines[tid]["frames"] == len(theirs)
        assert timelines[tid]["keyframes"] == sum(p.keyframe for p in theirs)
        times = [p.pts_ms for p in theirs if p.pts_ms is not None]
        assert abs(timelines[tid]["first_ms"] - min(times)) <= 1
        assert abs(timelines[tid]["last_ms"] - max(times)) <= 1
        mine = [b for b in blocks if b["track"] == tid]
        assert [round(b["time_ms"]) for b in mine] == [round(p.pts_ms or 0) for p in theirs]
    assert "av_sync_start_ms" in records[-1] or any("av_sync_start_ms" in r for r in records)


def test_human_output_levels(h264_file: Path) -> None:
    code, text = analyse(h264_file.read_bytes(), detail=2)
    assert code == EXIT_OK
    for needle in (
        "EBML @0",
        "DocType",
        "= matroska",
        "Segment @",
        "TimestampScale",
        "CodecID",
        "V_MPEG4/ISO/AVC",
        "Cluster @",
        "Cues @",
    ):
        assert needle in text
    assert "SimpleBlock" not in text
    code, text = analyse(h264_file.read_bytes(), detail=4)
    assert "SimpleBlock" in text and "CueClusterPosition" in text and "keyframe every" in text
    code, text = analyse(h264_file.read_bytes(), detail=0)
    assert text.strip().splitlines() == [text.strip().splitlines()[-1]]  # only the summary


def test_our_muxer_output_is_valid() -> None:
    tracks = [
        TrackMeta(1, "video", "VP8", width=16, height=16, fpks=25000),
        TrackMeta(2, "audio", "MP3", rate=44100, channels=1),
    ]
    m = EbmlMuxer(tracks, webm=False)
    data = m.header()
    for i in range(100):
        data += m.packet(Packet(1, i * 40, 0, i % 50 == 0, b"v" * 20))
        data += m.packet(Packet(2, i * 40, 0, True, b"a" * 10))
    code, text = analyse(data, detail=1)
    assert code == EXIT_OK, text
    assert "Track 1 VP8: 100 frames (2 key)" in text and "keyframe every 2000 ms" in text


def test_timestamps_going_backwards() -> None:
    m = EbmlMuxer([TrackMeta(1, "audio", "MP3", rate=44100, channels=1)], webm=False)
    data = m.header() + b"".join(m.packet(Packet(1, t, 0, True, b"x")) for t in (0, 1000, 500))
    code, text = analyse(data)
    assert code == EXIT_PROBLEMS and "timestamp goes backwards from 1000 to 500" in text
    # a second Cluster stamped before the first
    clusters = b"".join(
        unknown_size_master(s.CLUSTER) + uint_element(s.TIMESTAMP, ts) for ts in (9000, 100)
    )
    code, text = analyse(m.header() + clusters)
    assert code == EXIT_PROBLEMS and "Cluster timestamp goes backwards from 9000 to 100" in text


def test_element_in_wrong_place() -> None:
    m = EbmlMuxer([TrackMeta(1, "audio", "MP3", rate=44100, channels=1)], webm=False)
    data = (
        m.header()
        + unknown_size_master(s.CLUSTER)
        + uint_element(s.TIMESTAMP, 0)
        + uint_element(s.TRACK_NUMBER, 3)
    )
    code, text = analyse(data)
    assert (
        code == EXIT_PROBLEMS
        and "TrackNumber at byte" in text
        and "not allowed inside Cluster" in text
    )


def test_wrong_sizes(tmp_path: Path) -> None:
    m = EbmlMuxer([TrackMeta(1, "audio", "MP3", rate=44100, channels=1)], webm=False)
    head = m.header()
    seg = head.index(s.SEGMENT.to_bytes(4, "big"))
    inside = m.packet(Packet(1, 0, 0, True, b"frame"))[12:]  # Timestamp and SimpleBlock
    # a sized Segment holding a Cluster that claims 1000 bytes more than there are
    cluster = s.CLUSTER.to_bytes(4, "big") + encode_size(1000 + len(inside)) + inside
    path = tmp_path / "bad.mkv"
    path.write_bytes(head[:seg] + element(s.SEGMENT, head[seg + 12 :] + cluster))
    res = cli(path)
    assert res.returncode == EXIT_PROBLEMS
    assert "Traceback" not in res.stderr and "runs past its parent" in res.stdout
    assert res.stdout.strip().splitlines()[-1].startswith("EBML: 1 problem")
    # a block whose size runs past its Cluster
    body = element(s.SIMPLE_BLOCK, b"\x81\x00\x00\x80xyz")
    cluster = element(s.CLUSTER, uint_element(s.TIMESTAMP, 0) + body[:1] + b"\x90" + body[2:])
    m = EbmlMuxer([TrackMeta(1, "audio", "MP3", rate=44100, channels=1)], webm=False)
    code, text = analyse(m.header() + cluster)
    assert code == EXIT_PROBLEMS and "SimpleBlock at byte" in text


def test_truncated_at_every_7th_byte(small_webm: Path) -> None:
    data = small_webm.read_bytes()
    assert len(data) < 20000
    for cut in range(0, len(data), 7):
        code, text = analyse(data[:cut], detail=0)
        assert code == EXIT_PROBLEMS, cut
        last = text.strip().splitlines()[-1]
        assert last.startswith("EBML: ") and "problem" in last, (cut, last)


def test_bit_flips_never_crash(small_webm: Path) -> None:
    data = small_webm.read_bytes()
    rng = random.Random(1234)
    outcomes = set()
    for _ in range(300):
        raw = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        code, text = analyse(bytes(raw), detail=0)
        assert text.strip().splitlines()[-1].startswith("EBML: ")
        outcomes.add(code)
    assert EXIT_PROBLEMS in outcomes


def test_cli_on_garbage_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mkv"
    path.write_bytes(b"\x00hello" * 50)
    res = cli(path)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "bad first byte" in res.stdout or "not EBML" in res.stdout
    res = cli(tmp_path / "nope.mkv")
    assert res.returncode != 0 and "Traceback" not in res.stderr


def test_unknown_size_outside_segment_and_cluster() -> None:
    """An unknown-size Tracks: named as such, not printed as '(None bytes) runs past'."""
    m = EbmlMuxer([TrackMeta(1, "audio", "MP3", rate=44100, channels=1)], webm=False)
    head = m.header()
    tracks = head.index(s.TRACKS.to_bytes(4, "big"))
    size_len = 8 - (head[tracks + 4].bit_length() - 1)  # length of the EBML size field
    broken = head[: tracks + 4] + b"\x01" + b"\xff" * 7 + head[tracks + 4 + size_len :]
    code, text = analyse(broken + m.packet(Packet(1, 0, 0, True, b"frame")))
    assert code == EXIT_PROBLEMS, text
    assert f"Tracks at byte {tracks} has an unknown size" in text, text
    assert "only Segment and Cluster may have an unknown size" in text and "None" not in text
