"""The shared driver (analysers/common.run) on a source that stalls: -T and -V's exit 4
must fire while the source is blocked in a read, not only when the next chunk arrives."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from analysers.common import EXIT_TIMEOUT, EXIT_TOO_SLOW, run
from analysers.flv import FlvAnalyser, main
from tests.codecs_flv.media import ffmpeg_flv


@pytest.fixture(scope="module")
def flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return ffmpeg_flv(tmp_path_factory.mktemp("stall") / "a.flv", "aac", 4).read_bytes()


def stalling(data: bytes, release: threading.Event) -> Iterator[bytes]:
    """The first quarter of ``data``, then a read that blocks until ``release``."""
    yield data[: len(data) // 4]
    release.wait(30)


@pytest.mark.parametrize(
    ("validate", "timeout", "code", "message"),
    [(False, 1.0, EXIT_TIMEOUT, "timeout after 1 s"), (True, 0.0, EXIT_TOO_SLOW, "too slowly")],
)
def test_stalled_source_in_process(
    flv: bytes, validate: bool, timeout: float, code: int, message: str
) -> None:
    release = threading.Event()
    out = io.StringIO()
    started = time.monotonic()
    try:
        result = run(
            FlvAnalyser(detail=0, as_json=False, out=out), stalling(flv, release), validate, timeout
        )
    finally:
        release.set()
    wall = time.monotonic() - started
    assert result == code, out.getvalue()
    assert message in out.getvalue()
    assert out.getvalue().strip().splitlines()[-1].startswith("MistAnalyserFLV: 1 problem")
    assert wall < 10  # the stalled read would otherwise hold the run for 30 s


def test_stalled_stdin_through_the_program(flv: bytes) -> None:
    """A pipe that stays open and silent: -T 1 ends the program with exit 3."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "analysers.flv", "-", "-T", "1", "-D", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(flv[: len(flv) // 4])
        proc.stdin.flush()
        proc.wait(timeout=20)  # stdin stays open (and silent) until the program ends
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == EXIT_TIMEOUT, out + err
    assert b"timeout after 1 s" in out and b"Traceback" not in err and b"Fatal" not in err


def test_stdin_without_a_descriptor(flv: bytes) -> None:
    """A replaced stdin (click's CliRunner) has no file descriptor: read it as a stream."""
    result = CliRunner().invoke(main, ["-", "-D", "0"], input=flv)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("MistAnalyserFLV: valid")
