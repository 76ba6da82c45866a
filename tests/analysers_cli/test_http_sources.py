"""``http://`` sources: the file analysers read a URL as they read a file, an HTTP error
is an unreadable source (exit 2), and MistAnalyserHLS follows a playlist over HTTP, paced
by ``-V`` and failing with exit 4 when segments arrive more slowly than real time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.analysers_cli.progs import FIXTURES, VALID, cli, cli_all, golden_summary, summary

SLOW_S = 3.0  # each segment under /slow/ takes this long to start arriving


class Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow/"):
            self.path = self.path[len("/slow") :]
            if self.path.endswith(".ts"):
                time.sleep(SLOW_S)  # the slow server under test, not synchronisation
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(FIXTURES)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_file_analysers_read_urls(server: str) -> None:
    progs = ["MistAnalyserFLV", "MistAnalyserTS", "MistAnalyserMP4", "MistAnalyserEBML"]
    urls = [(p, (f"{server}/{VALID[p].name}",)) for p in progs]
    for prog, by_url in zip(progs, cli_all(urls), strict=True):
        assert by_url.returncode == 0, (prog, by_url.stdout, by_url.stderr)
        assert summary(by_url.stdout) == golden_summary(prog)


def test_http_error_is_an_unreadable_source(server: str) -> None:
    progs = ["MistAnalyserFLV", "MistAnalyserMP4", "MistAnalyserHLS"]
    for prog, res in zip(
        progs, cli_all([(p, (f"{server}/missing.bin",)) for p in progs]), strict=True
    ):
        assert res.returncode == 2, (prog, res.stdout, res.stderr)
        assert "404" in res.stdout + res.stderr
        assert "Traceback" not in res.stdout + res.stderr


def test_hls_over_http_paced_by_validate(server: str) -> None:
    started = time.monotonic()
    res = cli("MistAnalyserHLS", f"{server}/hls/h264_aac.m3u8", "-V", "--json")
    wall = time.monotonic() - started
    assert res.returncode == 0, res.stdout + res.stderr
    assert summary(res.stdout).startswith("HLS: valid segments=2")
    assert wall >= 0.8, wall  # the second one-second segment waits for real time


def test_hls_slow_segments_exit_4(server: str) -> None:
    res = cli("MistAnalyserHLS", f"{server}/slow/hls/h264_aac.m3u8", "-V", timeout=30)
    assert res.returncode == 4, res.stdout + res.stderr
    assert "data arrives too slowly" in res.stdout
    assert "Traceback" not in res.stderr
