"""MistAnalyserTS on files made by ffmpeg, compared with ffprobe; damaged inputs."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from analysers.common import run
from analysers.ts import TsAnalyser
from tests.codecs_ts.media import CODEC_NAMES, make_ts


def analyse(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analysers.ts", *args], input=stdin.decode("latin-1") if stdin else None,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def analyse_bytes(data: bytes, detail: int = 0) -> tuple[int, str]:
    out = io.StringIO()
    analyser = TsAnalyser(detail=detail, as_json=False, out=out)
    code = run(analyser, iter([data]), False, 0)
    return code, out.getvalue()


def ffprobe_streams(path: Path) -> list[dict]:
    cmd = ["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-of", "json", str(path)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, timeout=60).stdout)[
        "streams"
    ]


@pytest.mark.parametrize(
    "variant", ["h264_aac", "hevc_aac", "h264_mp3", "h264_ac3", "h264_eac3", "h264_opus"]
)
def test_agrees_with_ffprobe(ts_files: dict[str, Path], variant: str) -> None:
    path = ts_files[variant]
    res = analyse(str(path), "--json", "-D", "0")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1].startswith("MistAnalyserTS: valid")
    records = [json.loads(line) for line in lines[:-1]]
    tracks = [r for r in records if "track" in r and "codec" in r and "type" in r]
    timelines = [r["timeline"] for r in records if "timeline" in r]
    probe = ffprobe_streams(path)
    assert [t["codec"] for t in tracks] == [CODEC_NAMES[s["codec_name"]] for s in probe]
    assert [t["pid"] for t in tracks] == [int(s["id"], 16) for s in probe]
    assert [t["frames"] for t in timelines] == [int(s["nb_read_packets"]) for s in probe]
    for track, stream in zip(tracks, probe, strict=True):
        if stream["codec_type"] == "video":
            assert (track["width"], track["height"]) == (stream["width"], stream["height"])
        else:
            assert (track["rate"], track["channels"]) == (
                int(stream["sample_rate"]),
                stream["channels"],
            )


def test_av_sync_and_keyframes(ts_files: dict[str, Path]) -> None:
    path = ts_files["h264_aac"]
    res = analyse(str(path), "-D", "0")
    probe = ffprobe_streams(path)
    expected = (float(probe[1]["start_time"]) - float(probe[0]["start_time"])) * 1000
    got = int(res.stdout.splitlines()[-1].split("av_start_diff_ms=")[1])
    assert abs(got - expected) <= 1
    assert "keyframe_interval_ms=480" in res.stdout  # -g 12 at 25 fps


def test_detail_bits_and_pid_filter(ts_files: dict[str, Path]) -> None:
    path = str(ts_files["h264_aac"])
    pes_only = analyse(path, "-D", "1", "-P", "0x101").stdout
    assert "PES PID 257" in pes_only and "PES PID 256" not in pes_only
    assert " PID   257 S cc=" not in pes_only
    packets = analyse(path, "-D", "4", "-P", "256").stdout
    assert "PCR=" in packets and "af[R" in packets and "PES PID" not in packets
    psi = analyse(path, "-D", "2").stdout
    assert " PID     0 S cc=0" in psi and " PID   256 " not in psi.split("PID   256 H264")[0]
    hexdump = analyse(path, "-D", "64", "-P", "0").stdout
    assert "000000000b0" in hexdump.replace(" ", "") or "4740001" in hexdump.replace(" ", "")


def test_raw_output(ts_files: dict[str, Path], tmp_path: Path) -> None:
    path = ts_files["h264_aac"]
    es = tmp_path / "video.h264"
    assert analyse(str(path), "-D", "0", "-P", "256", "-R", str(es)).returncode == 0
    cmd = [
        "ffprobe",
        "-v",
        "error",
        "-f",
        "h264",
        "-count_frames",
        "-show_entries",
        "stream=nb_read_frames",
        "-of",
        "csv=p=0",
        str(es),
    ]
    assert subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip() == "50"
    copy = tmp_path / "copy.ts"
    junky = tmp_path / "junky.ts"
    data = path.read_bytes()
    junky.write_bytes(data[:18800] + b"\x00junk\x47" + data[18800:])
    assert analyse(str(junky), "-D", "0", "-R", str(copy)).returncode == 1
    assert copy.read_bytes() == data


def test_dropped_packet_is_reported(ts_files: dict[str, Path], tmp_path: Path) -> None:
    data = ts_files["h264_aac"].read_bytes()
    n = next(
        i for i in range(200, len(data) // 188) if data[i * 188 + 1 : i * 188 + 3] == b"\x01\x00"
    )
    damaged = tmp_path / "dropped.ts"
    damaged.write_bytes(data[: n * 188] + data[n * 188 + 188 :])
    res = analyse(str(damaged), "-D", "0")
    assert res.returncode == 1
    assert "PROBLEM: PID 256: continuity counter" in res.stdout
    assert "cc_errors=1" in res.stdout.splitlines()[-1]
    assert "Traceback" not in res.stderr


def test_stdin_and_garbage() -> None:
    res = analyse("-", "-D", "0", stdin=b"this is not a transport stream" * 20)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "problem" in res.stdout.splitlines()[-1]
    missing = analyse("/nonexistent/file.ts")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_truncated_at_every_7th_byte(tmp_path: Path) -> None:
    data = make_ts(tmp_path / "small.ts", "h264_aac", seconds=0.12).read_bytes()
    assert len(data) < 40_000
    for cut in range(0, len(data), 7):
        code, out = analyse_bytes(data[:cut])
        last = out.splitlines()[-1]
        assert last.startswith("MistAnalyserTS:"), (cut, out)
        if cut % 188:
            assert code == 1, (cut, last)
            assert "truncated" in out


def test_bit_flips_never_crash(ts_files: dict[str, Path]) -> None:
    data = ts_files["h264_aac"].read_bytes()[: 188 * 150]
    rng = random.Random(1234)
    for _ in range(40):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        code, out = analyse_bytes(bytes(damaged))
        assert code in (0, 1)
        assert out.splitlines()[-1].startswith("MistAnalyserTS:")
    # damage to sync bytes and continuity counters is always noticed
    for n in range(10):
        damaged = bytearray(data)
        pkt = rng.randrange(5, 140) * 188
        if n % 2:
            damaged[pkt] ^= 1 << rng.randrange(8)
        else:
            damaged[pkt + 3] ^= 1 << rng.randrange(2)
        code, out = analyse_bytes(bytes(damaged))
        assert code == 1, out
        assert "lost sync" in out or "continuity counter" in out


def test_raw_to_stdout_keeps_text_apart(ts_files: dict[str, Path]) -> None:
    path = ts_files["h264_aac"]
    res = subprocess.run(
        [sys.executable, "-m", "analysers.ts", str(path), "-P", "257", "-R", "-"],
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0
    assert b"MistAnalyserTS: valid" in res.stderr.splitlines()[-1]
    from mistcodecs.aac import parse_adts

    assert len(parse_adts(res.stdout)) == 95


def test_pes_timestamps_match_ffprobe_packets(ts_files: dict[str, Path]) -> None:
    path = ts_files["hevc_aac"]
    res = analyse(str(path), "--json", "-D", "1", "-P", "256")
    pes = [json.loads(line) for line in res.stdout.splitlines()[:-1]]
    pes = [r for r in pes if r.get("pes_pid") == 256 and "stream_id" in r]
    cmd = [
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "v",
        "-show_entries",
        "packet=pts,dts",
        "-of",
        "json",
        str(path),
    ]
    packets = json.loads(subprocess.run(cmd, check=True, capture_output=True, timeout=60).stdout)[
        "packets"
    ]
    assert [(r["pts"], r["dts"] or r["pts"]) for r in pes] == [
        (p["pts"], p["dts"]) for p in packets
    ]


def test_impossible_pat_section_length_is_reported(ts_files: dict[str, Path]) -> None:
    """section_length 4095 in a PAT (max 1021): a problem, not a silently dropped section."""
    data = bytearray(ts_files["h264_aac"].read_bytes())
    code, text = analyse_bytes(bytes(data))
    assert code == 0, text
    # the first PAT packet (ffmpeg writes the SDT first): PID 0, PUSI, pointer field 0
    pat = next(k for k in range(0, len(data), 188) if data[k + 1 : k + 3] == b"\x40\x00")
    assert data[pat + 4] == 0 and data[pat + 5] == 0
    data[pat + 6 : pat + 8] = b"\xbf\xff"  # section_syntax 1, section_length 0xFFF
    code, text = analyse_bytes(bytes(data))
    assert code == 1, text
    assert "section_length 4095, over the maximum of 1021" in text, text
