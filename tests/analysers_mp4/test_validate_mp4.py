"""MistAnalyserMP4 -V: a local file is played out in media time; stdin is paced by
the media that has arrived (faststart sample ranges, fragment times), so a source
slower than real time ends with exit 4."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from analysers.mp4_progress import Mp4Progress
from mistcodecs.mp4.boxes import buffer_reader

SECONDS = 3
LAYOUTS = {
    "plain": [],  # moov at the end
    "faststart": ["-movflags", "faststart"],
    "frag": ["-movflags", "frag_keyframe+empty_moov"],
}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("mp4v")
    files = {}
    for name, flags in LAYOUTS.items():
        path = out / f"{name}.mp4"
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={SECONDS}",
             "-f", "lavfi", "-i", f"sine=sample_rate=44100:duration={SECONDS}",
             "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "800k", "-g", "25",
             "-c:a", "aac", *flags, str(path)],
            check=True, timeout=60,
        )  # fmt: skip
        files[name] = path
    return files


def test_progress_follows_arriving_bytes(media: dict[str, Path]) -> None:
    """Sans-IO: media time grows with the prefix for faststart and fragmented files and
    stays at 0 (begun, nothing playable) when moov comes last."""
    for name, path in media.items():
        data = path.read_bytes()
        progress = Mp4Progress(buffer_reader(data))
        seen = []
        for cut in range(4096, len(data) + 4096, 4096):
            seen.append(progress.update(min(cut, len(data))))
        times = [t for t in seen if t is not None]
        assert times == sorted(times), name
        if name == "plain":
            assert set(times) == {0}
        else:
            half = seen[len(seen) // 2]
            assert half is not None and 0 < half < times[-1], (name, half)
            assert times[-1] >= (SECONDS - 1) * 1000, (name, times[-1])


def cli(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "analysers.mp4", *args, "-D", "0"],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(proc: subprocess.Popen[bytes], started: float) -> tuple[int, str, float]:
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    code = proc.wait(timeout=60)
    proc.stdout.close()
    return code, out, time.monotonic() - started


def paced_file(path: Path) -> tuple[int, str, float]:
    return finish(cli(str(path), "-V"), time.monotonic())


def trickled(path: Path, pause: float) -> tuple[int, str, int]:
    """stdin: one second of media (by bytes) every ``pause`` seconds; returns the exit
    code, the output and how many of the seconds were sent before the analyser ended."""
    data = path.read_bytes()
    step = len(data) // SECONDS + 1
    started = time.monotonic()
    proc = cli("-", "-V", stdin=subprocess.PIPE)
    assert proc.stdin is not None
    stdin = proc.stdin
    gone = threading.Event()
    sent: list[int] = []

    def feed() -> None:
        try:
            for i in range(SECONDS):
                if i and gone.wait(pause):  # the slow source itself
                    return
                stdin.write(data[i * step : (i + 1) * step])
                stdin.flush()
                sent.append(i)
        except OSError:
            pass  # the analyser gave up first
        finally:
            stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        code, out, _ = finish(proc, started)
        gone.set()  # the analyser has ended: what the feeder sent by now is final
        feeder.join(10)
        return code, out, len(sent)
    finally:
        gone.set()
        feeder.join(10)


def test_validate_paces_files_and_notices_slow_sources(media: dict[str, Path]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        files = {n: pool.submit(paced_file, p) for n, p in media.items()}
        slow = {n: pool.submit(trickled, p, 3.5) for n, p in media.items()}
        live = {n: pool.submit(trickled, p, 0.8) for n, p in media.items() if n != "plain"}
    for name, job in files.items():
        code, out, wall = job.result()
        assert code == 0 and "MP4: valid" in out, (name, out)
        assert wall >= SECONDS - 1.0, (name, wall)  # played out in media time
    for name, trickle in slow.items():
        code, out, sent = trickle.result()
        assert code == 4 and "data arrives too slowly" in out, (name, out)
        assert sent < SECONDS, (name, sent)  # it gave up before the source ended
    for name, trickle in live.items():
        code, out, _ = trickle.result()
        assert code == 0, (name, out)  # a source faster than real time passes
