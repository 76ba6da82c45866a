"""MistAnalyserFLV on real and damaged files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from analysers.flv import main
from mistcodecs.flv import iter_tags
from tests.codecs_flv.media import ffmpeg_flv, pyav_flv, pyav_packets


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("aflv")
    return {
        "h264_aac": ffmpeg_flv(d / "h264_aac.flv", "aac"),
        "h264_mp3": ffmpeg_flv(d / "h264_mp3.flv", "libmp3lame"),
        "hevc_aac": pyav_flv(d / "hevc_aac.flv", "libx265", "aac"),
        "small": ffmpeg_flv(d / "small.flv", "aac", 0.5, ("-s", "32x24")),
    }


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a failure of the analyser
    return result.exit_code, result.output


def summary(output: str) -> dict[str, str]:
    last = output.strip().splitlines()[-1]
    return dict(part.split("=", 1) for part in last.split() if "=" in part)


def ffprobe_counts(path: Path) -> dict[str, tuple[str, int, int]]:
    """codec, frames, keyframes per stream type, from the Debian ffprobe."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=stream_index,flags:stream=index,codec_type,codec_name",
         "-of", "json", str(path)], capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    info = json.loads(out)
    kinds = {s["index"]: (s["codec_type"], s["codec_name"]) for s in info["streams"]}
    result: dict[str, tuple[str, int, int]] = {}
    for kind, codec in kinds.values():
        pk = [p for p in info["packets"] if kinds[p["stream_index"]][0] == kind]
        result[kind] = (codec, len(pk), sum("K" in p["flags"] for p in pk))
    return result


@pytest.mark.parametrize("name", ["h264_aac", "h264_mp3"])
def test_agrees_with_ffprobe(files: dict[str, Path], name: str) -> None:
    code, out = run(files[name], "-D", "2")
    assert code == 0, out
    s = summary(out)
    ref = ffprobe_counts(files[name])
    assert int(s["video_frames"]) == ref["video"][1]
    assert int(s["keyframes"]) == ref["video"][2]
    assert int(s["audio_frames"]) == ref["audio"][1]
    assert "H264 config: {'profile':" in out
    assert ("AAC config" in out) == (name == "h264_aac")
    assert "onMetaData: {" in out and "'width': 160.0" in out
    assert "keyframe_interval_ms=1000" in out.splitlines()[-1]


def test_enhanced_hevc_agrees_with_pyav(files: dict[str, Path]) -> None:
    code, out = run(files["hevc_aac"], "--json", "-D", "2")
    assert code == 0
    records = [json.loads(line) for line in out.strip().splitlines()[:-1]]
    video = [r for r in records if r.get("type") == "video" and r.get("kind") == "frame"]
    ref = pyav_packets(files["hevc_aac"])
    assert [(r["timestamp"], r["timestamp"] + r["cts"]) for r in video] == [
        (d, p) for d, p, _ in ref["video"]
    ]
    assert all(r["codec"] == "HEVC" and r["enhanced"] for r in video)
    config = next(r for r in records if r.get("codec") == "HEVC" and "config" in r)
    assert config["config"]["nal_length_size"] == 4
    assert records[-1]["timeline"]["video_frames"] == len(video)


def test_filter(files: dict[str, Path]) -> None:
    _, out = run(files["h264_aac"], "-F", "audio")
    tag_lines = [line for line in out.splitlines() if line.startswith("@")]
    assert tag_lines and all(" audio " in line for line in tag_lines)
    _, out9 = run(files["h264_aac"], "-F", "9")
    assert all(" video " in line for line in out9.splitlines() if line.startswith("@"))
    code, out = run(files["h264_aac"], "-F", "bogus")
    assert code == 2 and "unknown tag type" in out


def test_truncated_at_every_7th_byte(files: dict[str, Path], tmp_path: Path) -> None:
    data = files["small"].read_bytes()
    boundaries = {13} | {t.offset + t.size for t in iter_tags(data)}
    bad = tmp_path / "cut.flv"
    checked = 0
    for cut in range(0, len(data), 7):
        bad.write_bytes(data[:cut])
        code, out = run(bad, "-D", "0")
        last = out.strip().splitlines()[-1]
        assert last.startswith("MistAnalyserFLV:")
        if cut in boundaries:
            assert code == 0
        else:
            assert code == 1 and "truncated" in out, (cut, out)
            checked += 1
    assert checked > 50


def test_wrong_sizes_and_timestamps(files: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(files["small"].read_bytes())
    tags = list(iter_tags(bytes(data)))
    bad = tmp_path / "bad.flv"
    # a wrong PreviousTagSize
    t = tags[3]
    broken = bytearray(data)
    broken[t.offset + t.size - 4 : t.offset + t.size] = (999).to_bytes(4, "big")
    bad.write_bytes(broken)
    code, out = run(bad, "-D", "0")
    assert (
        code == 1
        and "bad PreviousTagSize 999 after the" in out
        and f"tag at byte {t.offset}" in out
    )
    # a data size pointing past the end
    broken = bytearray(data)
    broken[t.offset + 1 : t.offset + 4] = b"\xff\xff\x00"
    bad.write_bytes(broken)
    code, out = run(bad, "-D", "0")
    assert code == 1 and "truncated" in out
    # a video timestamp going backwards
    video = [x for x in tags if x.type == 9]
    broken = bytearray(data)
    broken[video[-1].offset + 4 : video[-1].offset + 8] = b"\x00\x00\x00\x00"
    bad.write_bytes(broken)
    code, out = run(bad, "-D", "0")
    assert code == 1 and "video timestamp goes backwards" in out


def test_bit_flips_never_crash(files: dict[str, Path], tmp_path: Path) -> None:
    data = files["small"].read_bytes()
    bad = tmp_path / "flip.flv"
    problems = 0
    for i, pos in enumerate(range(0, len(data), max(1, len(data) // 150))):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << (i % 8)
        bad.write_bytes(flipped)
        code, out = run(bad, "-D", "0")
        assert code in (0, 1) and out.strip().splitlines()[-1].startswith("MistAnalyserFLV:")
        problems += code == 1
    assert problems > 0


def test_command_line_garbage_and_stdin(files: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.flv"
    junk.write_bytes(b"not an flv at all" * 10)
    res = subprocess.run(
        [sys.executable, "-m", "analysers.flv", str(junk)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 1 and "not an FLV file" in res.stdout and "Traceback" not in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "analysers.flv", "-", "-D", "0"],
        input=files["small"].read_bytes(), capture_output=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 0 and res.stdout.decode().startswith("MistAnalyserFLV: valid")
