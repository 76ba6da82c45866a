"""Chromium (Playwright, Debian's /usr/bin/chromium) plays /<s>.html through hls.js and dash.js.

The page's own handlers (``window.mistPlayers``, registered by the HLS plug-in) are
given one source type each; for HLS the page is told to use hls.js even though
Chromium now plays HLS itself (``?forceplayer=hlsjs``). Playback must advance
20 s without stalling; with 1 s keyframes and LL-HLS, hls.js must sit < 3 s behind
the live edge (its ``latency``), and dash.js in low-latency mode likewise (its
``getCurrentLiveLatency()``). A failure shows the samples and what hls.js, dash.js and
the <video> reported (``window.mistEvents``, kept by the player page)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.outputs_http.conftest import Server

from .conftest import SteadyPublisher
from .test_subtitles import CUES
from .test_subtitles import subbed as subbed  # module fixture

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
WARM_UP_S = 3.0
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
HLS = "html5/application/vnd.apple.mpegurl"
CMAF_HLS = "html5/application/vnd.apple.mpegurl;version=7"
DASH = "dash/video/mp4"
STATE = """() => { const v = document.getElementById('video'); const b = v.buffered;
  const dash = window.mistDash;
  return {t: v.currentTime, err: v.error ? v.error.code : 0, hls: !!window.mistHls,
          dash: !!dash, latency: window.mistHls ? window.mistHls.latency : null,
          dash_latency: dash && dash.isReady() ? dash.getCurrentLiveLatency() : null,
          dash_ll: dash && dash.isReady() ? dash.getLowLatencyModeEnabled() : null,
          buffer: b.length ? b.end(b.length - 1) - v.currentTime : 0,
          rate: v.playbackRate, waiting: v.readyState < 3}; }"""
EVENTS = "() => window.mistEvents || []"


class Playback:
    """One-second samples of the <video> and what hls.js/dash.js reported meanwhile."""

    def __init__(self, kind: str, samples: list[dict[str, Any]], events: list[dict[str, Any]]):
        self.kind, self.samples, self.events = kind, samples, events

    def why(self) -> str:
        """The samples and the page's events, for assertion messages."""
        rows = [
            f"  {s['wall'] - self.samples[0]['wall']:5.1f}s t={s['t']:.2f} buffer={s['buffer']:.2f} "
            f"latency={s['latency'] if s['latency'] is not None else s['dash_latency']} "
            f"rate={s['rate']} err={s['err']}"
            for s in self.samples
        ]
        events = [f"  {e['t']:7.3f} {e['what']} {e['detail']}" for e in self.events[-40:]]
        return f"{self.kind}\nsamples:\n" + "\n".join(rows) + "\nevents:\n" + "\n".join(events)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


TAKE = """async ([stream, kind]) => {
  const info = await (await fetch('/json_' + encodeURIComponent(stream) + '.js')).json();
  const video = document.getElementById('video');
  video.pause(); video.removeAttribute('src'); video.load();
  const source = info.source.find(s => s.type === kind);
  return source ? window.mistPlayers[kind](video, source, info) : 'no source ' + kind; }"""


def play(
    browser: Any, server: Server, stream: str, kind: str, seconds: float, advance: float = 0
) -> Playback:
    """Open the player page and hand the <video> to the page's own handler for ``kind``
    (the page itself prefers progressive MP4 in Chromium); sample it once a second for
    ``seconds``, or until the playhead moved ``advance`` s (then ``seconds`` is a limit)."""
    page = browser.new_page()
    try:
        page.goto(f"{server.base}/{stream}.html?forceplayer=hlsjs")
        page.wait_for_function("() => Object.keys(window.mistPlayers || {}).length > 0")
        assert page.evaluate(TAKE, [stream, kind]) is True
        deadline = time.monotonic() + 20
        while page.evaluate(STATE)["t"] <= 0:  # started playing
            assert time.monotonic() < deadline, f"{kind}: playback did not start: " + str(
                page.evaluate(EVENTS)
            )
            time.sleep(0.2)
        time.sleep(WARM_UP_S)  # joining a live edge may hiccup once; then it must be smooth
        samples = [page.evaluate(STATE) | {"wall": time.monotonic()}]
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            time.sleep(1.0)
            samples.append(page.evaluate(STATE) | {"wall": time.monotonic()})
            if advance and samples[-1]["t"] - samples[0]["t"] >= advance:
                break
        return Playback(kind, samples, page.evaluate(EVENTS))
    finally:
        page.close()


def assert_smooth(run: Playback, seconds: float) -> None:
    """The playhead moved ``seconds`` and never stood still: no two one-second samples in
    a row without progress (a single slow second is a busy test machine, not a stall),
    and the player reported no error."""
    samples = run.samples
    assert all(s["err"] == 0 for s in samples), run.why()
    assert samples[-1]["t"] - samples[0]["t"] >= seconds, run.why()
    moved = [b["t"] - a["t"] > 0.25 for a, b in itertools.pairwise(samples)]
    assert not any(not x and not y for x, y in itertools.pairwise(moved)), run.why()
    errors = [e for e in run.events if e["what"] in ("hls error", "dash error", "video error")]
    assert not [e for e in errors if "fatal" in e["detail"] or e["what"] != "hls error"], run.why()


@pytest.mark.parametrize("kind", [HLS, CMAF_HLS])
def test_hlsjs_plays_live(browser: Any, server: Server, live: SteadyPublisher, kind: str) -> None:
    run = play(browser, server, live.stream, kind, 40, advance=20)
    assert all(s["hls"] for s in run.samples)  # hls.js, not the browser's own HLS
    assert_smooth(run, 20)


def test_ll_hls_latency_under_3s(browser: Any, server: Server, live: SteadyPublisher) -> None:
    run = play(browser, server, live.stream, CMAF_HLS, 20, advance=6)
    latencies = [s["latency"] for s in run.samples[-4:]]
    assert latencies and all(lat is not None and lat < 3.0 for lat in latencies), run.why()


def test_dashjs_plays_live(browser: Any, server: Server, live: SteadyPublisher) -> None:
    run = play(browser, server, live.stream, DASH, 40, advance=20)
    assert all(s["dash"] for s in run.samples)
    assert_smooth(run, 20)


def test_ll_dash_latency_under_3s(browser: Any, server: Server, live: SteadyPublisher) -> None:
    """The live MPD announces the chunked segment in progress (availabilityTimeOffset,
    availabilityTimeComplete=false, ServiceDescription latency): dash.js switches to
    its low-latency mode and keeps close to the live edge."""
    run = play(browser, server, live.stream, DASH, 20, advance=6)
    last = run.samples[-4:]
    assert all(s["dash_ll"] for s in last), run.why()
    assert all(s["dash_latency"] is not None and s["dash_latency"] < 3.0 for s in last), run.why()


@pytest.mark.parametrize("kind", [HLS, CMAF_HLS, DASH])
def test_vod_plays(browser: Any, server: Server, vod: str, kind: str) -> None:
    run = play(browser, server, vod, kind, 30, advance=14)  # the clip lasts 20 s
    assert_smooth(run, 14)


CUES_SEEN = """() => { const v = document.getElementById('video'); const dash = window.mistDash;
  const text = dash && dash.isReady() ? dash.getTracksFor('text') : [];
  const cues = [];
  for (const t of v.textTracks) { for (const c of (t.cues || [])) cues.push(
      [Math.round(c.startTime * 1000), Math.round(c.endTime * 1000), c.text]); }
  return {langs: text.map(t => t.lang), cues: cues, t: v.currentTime}; }"""


def test_dashjs_loads_the_webvtt_subtitles(browser: Any, server: Server, subbed: str) -> None:
    """dash.js finds the MPD's text AdaptationSet and turns its WebVTT segments into
    cues on the <video>: the source cues, at their times."""
    page = browser.new_page()
    try:
        page.goto(f"{server.base}/{subbed}.html?forceplayer=hlsjs")
        page.wait_for_function("() => Object.keys(window.mistPlayers || {}).length > 0")
        assert page.evaluate(TAKE, [subbed, DASH]) is True
        deadline = time.monotonic() + 40
        state = page.evaluate(CUES_SEEN)
        while len({tuple(c) for c in state["cues"]}) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            state = page.evaluate(CUES_SEEN)
        events = page.evaluate(EVENTS)
    finally:
        page.close()
    assert state["langs"] == ["en"], (state, events[-20:])  # dash.js: BCP 47 of "eng"
    expected = {(start, start + duration, text) for start, duration, text in CUES}
    seen = {tuple(c) for c in state["cues"]}
    assert len(seen) >= 3 and seen <= expected, (state, events[-20:])
