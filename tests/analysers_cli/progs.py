"""The analyser programs and how to start them (as the installed scripts would run)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "analysers_golden" / "fixtures"
MODULES = {
    "MistAnalyserFLV": "analysers.flv",
    "MistAnalyserTS": "analysers.ts",
    "MistAnalyserMP4": "analysers.mp4",
    "MistAnalyserEBML": "analysers.ebml",
    "MistAnalyserRTMP": "analysers.rtmp",
    "MistAnalyserHLS": "analysers.hls",
    "MistUtilMETA": "shm.dump",
}
# A valid local source per file-reading analyser (RTMP needs a server, META a stream).
VALID = {
    "MistAnalyserFLV": FIXTURES / "h264_aac.flv",
    "MistAnalyserTS": FIXTURES / "h264_aac.ts",
    "MistAnalyserMP4": FIXTURES / "h264_aac_faststart.mp4",
    "MistAnalyserEBML": FIXTURES / "vp9_opus.webm",
    "MistAnalyserHLS": FIXTURES / "hls" / "h264_aac.m3u8",
}
STDIN = ["MistAnalyserFLV", "MistAnalyserTS", "MistAnalyserMP4", "MistAnalyserEBML"]


def cli(
    prog: str, *args: str, stdin: bytes | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", MODULES[prog], *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def golden_summary(prog: str) -> str:
    """The summary line of VALID[prog] at the default detail, from its golden sidecar."""
    kind = MODULES[prog].rsplit(".", 1)[1]
    return summary((VALID[prog].parent / f"{VALID[prog].name}.{kind}.txt").read_text())


def cli_all(
    calls: list[tuple[str, tuple[str, ...]]], timeout: float = 30
) -> list[subprocess.CompletedProcess[str]]:
    """Several :func:`cli` runs at once (start-up dominates; the cores are idle)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda c: cli(c[0], *c[1], timeout=timeout), calls))


def summary(stdout: str) -> str:
    lines = stdout.strip().splitlines()
    assert lines, "no output at all"
    return lines[-1]
