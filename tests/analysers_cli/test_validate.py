"""``-V``: paced to media time, exit 4 when the source is more than 2 s slower than real
time. A 4 s file read from disk passes and takes about its media time; the same file
fed through stdin one second of media every four seconds exits 4.

The programs run side by side (each run is mostly waiting) to keep the suite short."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.analysers_cli.progs import MODULES, summary

SECONDS = 4
FORMATS = {  # program -> (ffmpeg output options, suffix)
    "MistAnalyserFLV": (["-c:v", "libx264", "-c:a", "aac", "-f", "flv"], "flv"),
    "MistAnalyserTS": (["-c:v", "libx264", "-c:a", "aac", "-f", "mpegts"], "ts"),
    "MistAnalyserEBML": (["-c:v", "libx264", "-c:a", "aac", "-f", "matroska"], "mkv"),
    "MistAnalyserMP4": (["-c:v", "libx264", "-c:a", "aac", "-f", "mp4"], "mp4"),
}
PACED = ["MistAnalyserFLV", "MistAnalyserTS", "MistAnalyserEBML"]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """4 s files of ~90 kB per second, so a 64 KiB read covers under a second."""
    out = tmp_path_factory.mktemp("validate")
    files = {}
    for prog, (opts, suffix) in FORMATS.items():
        path = out / f"media.{suffix}"
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={SECONDS}",
             "-f", "lavfi", "-i", f"sine=sample_rate=44100:duration={SECONDS}",
             "-preset", "ultrafast", "-b:v", "800k", "-g", "25", *opts, str(path)],
            check=True, timeout=120,
        )  # fmt: skip
        assert path.stat().st_size > 4 * 64 * 1024
        files[prog] = path
    return files


def timed(prog: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", MODULES[prog], *args, "-D", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return proc, time.monotonic() - started


def trickle(
    prog: str, path: Path, pieces: int, args: tuple[str, ...] = ("-V",), pause: float = 4.0
) -> tuple[int, str, int]:
    """Feed ``path`` on stdin one second of media (by bytes) every ``pause`` seconds;
    returns the exit code, the output and how many pieces were sent before it ended."""
    data = path.read_bytes()
    step = len(data) // SECONDS + 1
    ended = threading.Event()
    sent: list[int] = []
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULES[prog], "-", *args, "-D", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    def feed() -> None:
        try:
            for i in range(pieces):
                if i and ended.wait(pause):  # the slow source itself
                    return
                stdin.write(data[i * step : (i + 1) * step])
                stdin.flush()
                sent.append(i)
            stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the analyser gave up first, as it should

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        out = proc.stdout.read().decode()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ended.set()
        feeder.join(10)
        stdin.close()
        proc.stdout.close()
    return code, out, len(sent)


def test_validate_paces_fast_and_fails_slow_sources(media: dict[str, Path]) -> None:
    """All runs side by side: -V on files (paced), without -V (not paced), -V on a
    trickling stdin (exit 4), and -T on a trickling stdin (exit 3)."""
    with ThreadPoolExecutor(max_workers=len(PACED) * 3 + 1) as pool:
        paced = {p: pool.submit(timed, p, str(media[p]), "-V") for p in PACED}
        free = {p: pool.submit(timed, p, str(media[p])) for p in PACED}
        slow = {p: pool.submit(trickle, p, media[p], SECONDS) for p in PACED}
        # -T: the second piece would come long after the timeout: the run ends with exit 3
        timeout = pool.submit(trickle, PACED[0], media[PACED[0]], 2, ("-T", "2"), 30.0)
    for prog in PACED:
        (res, wall), (res_free, _) = paced[prog].result(), free[prog].result()
        assert res.returncode == 0, res.stdout + res.stderr
        assert summary(res.stdout) == summary(res_free.stdout)
        # the first read covers well under a second; the rest is played in real time
        assert wall >= SECONDS - 1.5, (prog, wall)
    for prog, job in slow.items():
        code, out, _ = job.result()
        assert code == 4, (prog, out)  # a source that is never noticed ends with exit 0
        assert "data arrives too slowly" in out, out
        assert "Traceback" not in out
    code, out, sent = timeout.result()
    assert code == 3 and "timeout after 2 s" in out and sent == 1, out
    assert summary(out).startswith("MistAnalyserFLV: ")


def test_mp4_validate_paces_a_fast_file(media: dict[str, Path]) -> None:
    res, wall = timed("MistAnalyserMP4", str(media["MistAnalyserMP4"]), "-V")
    assert res.returncode == 0
    assert wall >= SECONDS - 1.5, wall


@pytest.mark.slow
def test_mp4_validate_exits_4_on_a_slow_source(media: dict[str, Path]) -> None:
    code, out, _ = trickle("MistAnalyserMP4", media["MistAnalyserMP4"], 2)
    assert code == 4, out


def test_timeout_fires_on_a_stalled_source(media: dict[str, Path]) -> None:
    code, out, sent = trickle(PACED[0], media[PACED[0]], 2, ("-T", "1"), 30.0)
    assert code == 3, out
    assert sent == 1, sent  # it ended during the stall, not when the source did
