"""Chromium (Playwright) plays /<s>.html with its own <video>: H264/AAC MP4 and VP9/Opus WebM."""

from __future__ import annotations

import shutil
import time

import pytest

from .conftest import Server

pytestmark = pytest.mark.browser


def _play(server: Server, stream: str) -> tuple[float, str, str]:
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_api.sync_playwright() as p:
        kwargs = {"executable_path": exe} if exe else {}
        browser = p.chromium.launch(
            args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"], **kwargs
        )
        try:
            page = browser.new_page()
            page.goto(f"{server.base}/{stream}.html")
            deadline = time.monotonic() + 20
            state: list[object] = [0.0, None, ""]
            while time.monotonic() < deadline:
                state = page.evaluate(
                    "() => { const v = document.getElementById('video');"
                    " return [v.currentTime, v.error ? String(v.error.code) : '', v.src]; }"
                )
                if float(state[0]) > 2.0 or state[1]:  # type: ignore[arg-type]
                    break
                time.sleep(0.2)
            return float(state[0]), str(state[1] or ""), str(state[2])  # type: ignore[arg-type]
        finally:
            browser.close()


def test_mp4_plays_in_chromium(server: Server, vod_stream: str) -> None:
    current, error, src = _play(server, vod_stream)
    assert error == ""
    assert src.endswith(f"/{vod_stream}.mp4")
    assert current > 2.0


def test_webm_plays_in_chromium(server: Server, webm_vod_stream: str) -> None:
    current, error, src = _play(server, webm_vod_stream)
    assert error == ""
    assert src.endswith((f"/{webm_vod_stream}.webm", f"/{webm_vod_stream}.mp4"))
    assert current > 2.0
