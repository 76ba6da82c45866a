"""MistAnalyserMP4 on generated files, stdin, and damaged input."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysers.common import run
from analysers.mp4 import Mp4Analyser
from mistcodecs.mp4.records import Emsg
from tests.codecs_mp4.conftest import CASES, ffprobe_packets, make

NAMES = ["h264_aac.mp4", "frag.mp4", "faststart.mp4", "vp9_opus.mp4"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("an_mp4")
    out = {}
    for name in NAMES:
        if make(root / name, CASES[name]):
            out[name] = root / name
    return out


def analyse(data: bytes, detail: int = 2, as_json: bool = True) -> tuple[int, str]:
    out = io.StringIO()
    analyser = Mp4Analyser(detail=detail, as_json=as_json, out=out)
    code = run(analyser, iter([data[i : i + 4096] for i in range(0, len(data), 4096)]), False, 0)
    return code, out.getvalue()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analysers.mp4", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_ffprobe(files: dict[str, Path], name: str) -> None:
    if name not in files:
        pytest.skip("encoder missing")
    proc = cli("--json", "-D", "2", str(files[name]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("MP4: valid")
    records = [json.loads(line) for line in lines[:-1]]
    boxes = {rec["box"] for rec in records if "box" in rec}
    assert {"ftyp", "moov", "trak", "stsd", "mdhd"} <= boxes
    if name == "frag.mp4":
        assert {"moof", "traf", "trun", "tfdt", "mvex"} <= boxes
    timeline = [rec["timeline"] for rec in records if "timeline" in rec]
    probe = ffprobe_packets(files[name])
    assert len(timeline) == len(probe)
    for index, track in enumerate(timeline):
        packets = probe[index]
        assert track["samples"] == len(packets)
        assert track["keyframes"] == sum("K" in p["flags"] for p in packets)
        assert abs(track["first_dts"] - float(packets[0]["dts_time"]) * 1000) <= 1
    stsd = [rec for rec in records if rec.get("box") == "stsd"]
    assert any("avcC" in rec or "vpcC" in rec for rec in stsd)
    assert any("esds" in rec or "dOps" in rec for rec in stsd)


def test_human_output_and_stdin(files: dict[str, Path]) -> None:
    data = files["h264_aac.mp4"].read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "analysers.mp4", "-D", "3", "-"],
        input=data,
        capture_output=True,
        timeout=60,
    )
    text = proc.stdout.decode()
    assert proc.returncode == 0
    assert "[moov]" in text and "avcC=" in text and "A/V sync" in text
    assert text.strip().splitlines()[-1].startswith("MP4: valid")


def test_detail_zero_prints_only_summary(files: dict[str, Path]) -> None:
    proc = cli("-D", "0", str(files["faststart.mp4"]))
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip().splitlines()[-1]]


def test_reports_bad_chunk_offset(files: dict[str, Path]) -> None:
    data = bytearray(files["faststart.mp4"].read_bytes())
    at = data.index(b"stco")
    count = struct.unpack_from(">I", data, at + 8)[0]
    assert count > 0
    struct.pack_into(">I", data, at + 12, len(data) + 1000)
    code, out = analyse(bytes(data))
    assert code == 1
    assert "stco" in out and "outside the file" in out


def test_reports_sample_count_mismatch(files: dict[str, Path]) -> None:
    data = bytearray(files["faststart.mp4"].read_bytes())
    at = data.index(b"stts")
    first_count = struct.unpack_from(">I", data, at + 12)[0]
    struct.pack_into(">I", data, at + 12, first_count - 3)
    code, out = analyse(bytes(data))
    assert code == 1 and "stts covers" in out


def test_reports_trun_outside_mdat(files: dict[str, Path]) -> None:
    data = bytearray(files["frag.mp4"].read_bytes())
    at = data.index(b"trun")
    struct.pack_into(">i", data, at + 12, 10_000_000)  # data_offset
    code, out = analyse(bytes(data))
    assert code == 1 and "not inside an mdat" in out


def test_truncated_every_7th_byte_never_crashes(files: dict[str, Path]) -> None:
    data = files["frag.mp4"].read_bytes()[:3000]
    for cut in range(1, len(data), 7):
        code, out = analyse(data[:cut], detail=0, as_json=False)
        assert code == 1, cut
        assert out.strip().splitlines()[-1].startswith("MP4:")


def test_box_size_loop_and_garbage_exit_nonzero(tmp_path: Path, files: dict[str, Path]) -> None:
    loop = (
        struct.pack(">I4s", 24, b"moov")
        + struct.pack(">I4s", 16, b"moov")
        + struct.pack(">I4s", 8, b"moov")
    )
    path = tmp_path / "loop.mp4"
    path.write_bytes(loop)
    proc = cli(str(path))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no moov" in proc.stdout or "no audio, video" in proc.stdout
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\xff" * 100)
    proc = cli(str(garbage))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "PROBLEM" in proc.stdout
    flipped = bytearray(files["faststart.mp4"].read_bytes())
    for i in range(40, flipped.index(b"mdat"), 11):
        flipped[i] ^= 0xA5
    code, out = analyse(bytes(flipped), detail=0, as_json=False)
    assert "PROBLEM" in out
    assert code == 1


def test_sidx_and_emsg_decoded(tmp_path: Path, files: dict[str, Path]) -> None:
    dash = tmp_path / "dash.mp4"
    made = make(
        dash,
        [
            *CASES["h264_aac.mp4"][:-1],
            "aac",
            "-movflags",
            "frag_keyframe+empty_moov+default_base_moof+global_sidx",
        ],
    )
    assert made
    data = dash.read_bytes()
    moof = data.index(b"moof") - 4
    emsg = bytes(Emsg("urn:mpeg:dash:event:2012", "1", 1000, 500, 100, 42, b"hello"))
    code, out = analyse(data[:moof] + emsg + data[moof:])
    assert code == 0, out
    records = [json.loads(line) for line in out.splitlines()[:-1]]
    sidx = [r for r in records if r.get("box") == "sidx"]
    assert sidx and sidx[0]["references"] >= 3 and sidx[0]["timescale"] > 0
    event = next(r for r in records if r.get("box") == "emsg")
    assert (
        event["scheme"] == "urn:mpeg:dash:event:2012" and event["id"] == 42 and event["time"] == 500
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_fuzz_analyser_mutations(files: dict[str, Path], data: st.DataObject) -> None:
    original = files["frag.mp4"].read_bytes()[:5000]
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    code, out = analyse(bytes(mutated), detail=3, as_json=False)
    assert code in (0, 1)
    assert out.strip().splitlines()[-1].startswith("MP4:")


def test_nested_size_zero_is_reported(files: dict[str, Path]) -> None:
    """Size 0 means 'to the end of the file' only at top level; nested, it is damage."""
    data = bytearray(files["faststart.mp4"].read_bytes())
    trak = data.find(b"trak") - 4
    struct.pack_into(">I", data, trak, 0)
    code, text = analyse(bytes(data), 1, as_json=False)
    assert code == 1, text
    assert f"/moov @{trak}: 'trak' box at {trak} has size 0" in text, text


def test_stsc_naming_too_many_samples_is_reported(files: dict[str, Path]) -> None:
    data = bytearray(files["faststart.mp4"].read_bytes())
    assert analyse(bytes(data), 0)[0] == 0
    stsc = data.find(b"stsc")
    struct.pack_into(">I", data, stsc + 16, 0xFFFFFFFF)  # samples_per_chunk of entry 1
    code, text = analyse(bytes(data), 1, as_json=False)
    assert code == 1, text
    assert "/stsc: names " in text and "but stsz has" in text, text
