"""Through the controller: it picks our input from ``-j`` for a file stream, starts it
on demand for an HTTP request, and shows the input's error line for a bad file."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.inputs.support import probe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, deadline: float) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=20) as resp:
                return bytes(resp.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow  # the controller probes every program's -j first (~15 s)
def test_controller_starts_the_input_on_demand(media: dict[str, Path], tmp_path: Path) -> None:
    clip = tmp_path / "clip.mkv"
    shutil.copy(media["mkv"], clip)
    bad = tmp_path / "bad.flv"
    bad.write_bytes(b"FLV\x01\x05\x00\x00\x00\x09" + bytes(50))
    api, http = _free_port(), _free_port()
    cfg = {
        "account": {},
        "config": {"controller": {}, "protocols": [{"connector": "HTTP", "port": http}],
                   "triggers": {}, "serverid": "inputs-test"},
        "streams": {"clip": {"name": "clip", "source": str(clip)},
                    "bad": {"name": "bad", "source": str(bad)}},
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    proc = subprocess.Popen(
        ["MistController", "-c", str(tmp_path / "config.json"), "-p", str(api), "-i", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        body = _get(f"http://127.0.0.1:{http}/clip.mkv", deadline)
        out = tmp_path / "out.mkv"
        out.write_bytes(body)
        got = {p.kind: len(p.pts) for p in probe(out)}
        want = {p.kind: len(p.pts) for p in probe(clip)}
        assert got == want
        status = json.loads(_get(f"http://127.0.0.1:{http}/json_bad.js", deadline))
        assert "error" in status
    finally:
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=30)
    assert "started MistInEBML -s clip" in log
    assert "MistInFLV" in log and "cannot play" in log
    assert "Traceback" not in log
