"""The command-line contract every analyser program keeps (reference section 9): the
shared flags, ``-`` for stdin, exit 0 with a one-line summary last on a valid source,
non-zero on problems, 2 with a clear message (no traceback) on an unreadable source."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shm import StreamWriter
from shm.cleanup import stream_page_names
from shm.model import TrackMeta
from tests.analysers_cli.progs import MODULES, STDIN, VALID, cli, cli_all, golden_summary, summary
from tests.analysers_golden.test_ffprobe import compare, facts, probe
from tests.codecs_rtmp.test_nginx_analyser import MODULE, nginx, publish

NAMES = {
    "MistAnalyserFLV": "MistAnalyserFLV",
    "MistAnalyserTS": "MistAnalyserTS",
    "MistAnalyserMP4": "MP4",
    "MistAnalyserEBML": "EBML",
    "MistAnalyserRTMP": "MistAnalyserRTMP",
    "MistAnalyserHLS": "HLS",
}
__all__ = ["nginx"]  # the fixture, shared with the RTMP codec tests
ANALYSERS = [p for p in MODULES if p != "MistUtilMETA"]
SHARED_FLAGS = ["-D", "-V", "-T", "-g", "--json", "--help"]


def test_help_lists_the_shared_flags() -> None:
    helps = cli_all([(p, ("--help",)) for p in ANALYSERS])
    for prog, res in zip(ANALYSERS, helps, strict=True):
        assert res.returncode == 0, res.stderr
        for flag in SHARED_FLAGS:
            assert flag in res.stdout, f"{prog} --help does not mention {flag}"


def test_meta_help_lists_the_shared_flags() -> None:
    res = cli("MistUtilMETA", "--help")
    assert res.returncode == 0
    assert all(flag in res.stdout for flag in SHARED_FLAGS), res.stdout


@pytest.mark.parametrize("prog", list(VALID))
def test_valid_file_with_every_shared_flag(prog: str) -> None:
    src = str(VALID[prog])
    detail = "3" if prog == "MistAnalyserTS" else "1"
    res, human = cli_all(
        [(prog, (src, "-D", detail, "-T", "20", "-g", "4", "--json")), (prog, (src,))]
    )
    assert res.returncode == 0, res.stdout + res.stderr
    last = summary(res.stdout)
    assert last.startswith(f"{NAMES[prog]}: valid"), last
    for line in res.stdout.strip().splitlines()[:-1]:
        assert isinstance(json.loads(line), dict)
    assert human.returncode == 0 and summary(human.stdout) == last
    assert "Traceback" not in res.stderr + human.stderr


@pytest.mark.parametrize("prog", STDIN)
def test_stdin_gives_the_same_summary_as_the_file(prog: str) -> None:
    src = VALID[prog]
    with ThreadPoolExecutor(max_workers=2) as pool:
        from_stdin = pool.submit(cli, prog, "-", stdin=src.read_bytes())
        no_arg = pool.submit(cli, prog, stdin=src.read_bytes())  # the source defaults to stdin
    assert from_stdin.result().returncode == 0, from_stdin.result().stdout
    assert summary(from_stdin.result().stdout) == golden_summary(prog)
    assert summary(no_arg.result().stdout) == golden_summary(prog)


def test_missing_file_exits_2_without_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "such.file")
    progs = [p for p in ANALYSERS if p != "MistAnalyserRTMP"]
    for prog, res in zip(progs, cli_all([(p, (missing,)) for p in progs]), strict=True):
        assert res.returncode == 2, res.stdout + res.stderr
        assert "Traceback" not in res.stdout + res.stderr
        assert "No such file" in res.stdout + res.stderr
        assert summary(res.stdout).startswith(f"{NAMES[prog]}: 1 problem")


@pytest.mark.parametrize("prog", STDIN)
def test_empty_stdin_is_a_problem(prog: str) -> None:
    res = cli(prog, "-", stdin=b"")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "problem" in summary(res.stdout) and "Traceback" not in res.stderr


@pytest.mark.parametrize("prog", list(VALID))
def test_wrong_format_is_a_problem(prog: str, tmp_path: Path) -> None:
    """Another analyser's valid file: a diagnostic, exit 1, never a traceback."""
    other = VALID["MistAnalyserEBML" if prog != "MistAnalyserEBML" else "MistAnalyserFLV"]
    if prog == "MistAnalyserHLS":
        other = tmp_path / "bad.m3u8"
        other.write_text("#EXTM3U\n#EXTINF:abc,\nx.ts\n")
    res = cli(prog, str(other))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "problem" in summary(res.stdout)
    assert "Traceback" not in res.stdout + res.stderr


def test_bad_flag_values_are_usage_errors() -> None:
    for res in cli_all([(p, ("-D", "eleven", "x")) for p in ANALYSERS]):
        assert res.returncode == 2 and "Invalid value" in res.stderr


def test_rtmp_unreachable_and_not_a_url() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = cli("MistAnalyserRTMP", f"rtmp://127.0.0.1:{port}/live/x", "-T", "3", "-g", "4")
    assert res.returncode == 2 and "cannot open" in res.stderr
    bad = cli("MistAnalyserRTMP", "/some/file.flv")
    assert bad.returncode == 2 and "not an rtmp:// URL" in bad.stderr
    assert "Traceback" not in res.stderr + bad.stderr


# -- MistUtilMETA ---------------------------------------------------------------------


@pytest.fixture
def stream() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    left = stream_page_names(name)
    for n in left:
        try:
            os.unlink(os.path.join("/dev/shm", n))
        except FileNotFoundError:
            pass
    assert not left, f"pages left behind: {left}"


def test_meta_on_a_live_stream(stream: str) -> None:
    with StreamWriter(stream) as w:
        tid = w.add_track(TrackMeta(0, "video", "H264", init=b"12345", width=64, height=64))
        for i in range(10):
            w.append(tid, i * 200, 0, i % 5 == 0, bytes(100))
        res = cli("MistUtilMETA", stream, "--json")
        text = cli("MistUtilMETA", stream)
    assert res.returncode == 0, res.stderr
    snap = json.loads(res.stdout)
    assert snap["tracks"][str(tid)]["lastms"] == 1800
    assert text.returncode == 0 and "video H264 64x64" in text.stdout


def test_meta_accepts_the_shared_flags(stream: str) -> None:
    with StreamWriter(stream) as w:
        w.add_track(TrackMeta(0, "audio", "AAC", init=b"\x12\x08", rate=44100, channels=1))
        res = cli("MistUtilMETA", stream, "-D", "2", "-T", "5", "-g", "4", "--json")
    assert res.returncode == 0, res.stderr


def test_meta_missing_stream_exits_2(stream: str) -> None:
    res = cli("MistUtilMETA", stream)
    assert "not on the bus" in res.stderr and "Traceback" not in res.stderr
    assert res.returncode == 2
    assert res.stdout.strip()


@pytest.mark.skipif(not MODULE.exists(), reason="libnginx-mod-rtmp not installed")
def test_rtmp_live_stream_with_every_shared_flag(nginx: int, tmp_path: Path) -> None:
    """A live stream arrives in real time: -V passes; --json lines and the summary last;
    what the analyser saw agrees with ffprobe on the -R reconstruction."""
    pub = publish(nginx, "contract", 3)
    out = tmp_path / "got.flv"
    try:
        time.sleep(0.5)  # nginx only serves a live stream once the publisher is in
        res = cli(
            "MistAnalyserRTMP",
            f"rtmp://127.0.0.1:{nginx}/live/contract",
            *("-D", "2", "-V", "-T", "20", "-g", "4", "--json", "-R", str(out)),
            timeout=40,
        )
        assert pub.wait(30) == 0
    finally:
        pub.kill()
        pub.wait()
    assert res.returncode == 0, res.stdout + res.stderr
    assert summary(res.stdout).startswith("MistAnalyserRTMP: valid")
    records = [json.loads(line) for line in res.stdout.strip().splitlines()[:-1]]
    assert any("timeline" in r for r in records)
    compare("flv", facts("flv", records), probe(out))


# -- bad option values: a usage error (exit 2), never a traceback -------------------------

BAD_OPTIONS = [
    pytest.param(
        "MistAnalyserTS",
        ("-R", "{missing}/x.ts"),
        id="ts-raw-unwritable",
    ),
    pytest.param(
        "MistAnalyserTS",
        ("-P", "abc"),
        id="ts-pid-not-a-number",
    ),
    pytest.param(
        "MistAnalyserRTMP",
        ("-R", "{missing}/x.flv"),
        id="rtmp-reconstruct-unwritable",
    ),
    pytest.param("MistAnalyserFLV", ("-F", "bogus"), id="flv-filter-unknown"),
]


@pytest.mark.parametrize(("prog", "args"), BAD_OPTIONS)
def test_bad_option_values_give_a_usage_error(
    prog: str, args: tuple[str, ...], tmp_path: Path
) -> None:
    source = str(VALID.get(prog, "rtmp://127.0.0.1:9/live/x"))
    res = cli(prog, source, *(a.format(missing=tmp_path / "missing") for a in args))
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 2, res.stdout + res.stderr


def test_hls_unwritable_reconstruct_names_the_output(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "x.ts"
    res = cli("MistAnalyserHLS", str(VALID["MistAnalyserHLS"]), "-R", str(out))
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "cannot read source" not in res.stdout, res.stdout
