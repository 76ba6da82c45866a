"""hls.js and dash.js for the ``/<s>.html`` player page.

The libraries are vendored in ``outputs/http/static`` (see its NOTICE) and served with
long cache lifetimes. The player page calls ``window.mistPlayers[<source type>]`` for
each source in order; the handlers registered here take HLS when the browser cannot
play it natively (Firefox; Chromium has played HLS itself since ~2025 unless the page
says ``?forceplayer=hlsjs``) and DASH always, loading the library on first use.
The player objects are left on ``window.mistHls`` / ``window.mistDash`` (tests read
hls.js's ``latency`` from there).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from outputs.formats import register_player_script, register_static
from outputs.hls import respond
from outputs.http.message import Request, Response, error_response

LIBS = {"hlsjs.js": "hlsjs.js", "dashjs.js": "dashjs.js"}
LIB_PATH = "/{name}"  # /hlsjs.js and /dashjs.js, as MistServer (also under /hls/)

SCRIPT = """<script>
(function () {
  "use strict";
  var players = window.mistPlayers = window.mistPlayers || {};
  // ?forceplayer=hlsjs uses hls.js even where the browser plays HLS itself
  var force = new URLSearchParams(window.location.search).get("forceplayer");
  function lib(name, ready) {
    if (window[name === "hlsjs.js" ? "Hls" : "dashjs"]) { ready(); return; }
    var s = document.createElement("script");
    s.src = "%(path)s".replace("{name}", name);
    s.onload = ready;
    document.head.appendChild(s);
  }
  // what the player libraries and the <video> reported, newest last (tests show it on failure)
  var events = window.mistEvents = window.mistEvents || [];
  function note(what, detail) {
    events.push({ t: Math.round(performance.now()) / 1000, what: what, detail: detail || "" });
    if (events.length > 300) { events.splice(0, events.length - 300); }
  }
  function watch(video) {
    if (video.mistWatched) { return; }
    video.mistWatched = true;
    ["waiting", "stalled", "playing", "error", "ended"].forEach(function (name) {
      video.addEventListener(name, function () {
        note("video " + name, name === "error" && video.error ? video.error.code + " " + video.error.message : "t=" + video.currentTime.toFixed(2));
      });
    });
  }
  function hls(video, source) {
    if (!window.MediaSource) { return false; }
    if (force !== "hlsjs" && video.canPlayType("application/vnd.apple.mpegurl")) { return false; }
    watch(video);
    lib("hlsjs.js", function () {
      var Hls = window.Hls;
      // catch up (up to 1.5x) after a stall instead of staying further behind live
      var player = new Hls({ lowLatencyMode: true, backBufferLength: 90, maxLiveSyncPlaybackRate: 1.5 });
      window.mistHls = player;
      player.on(Hls.Events.ERROR, function (_, d) {
        var code = d.response ? " http " + d.response.code : "";
        var url = d.frag ? " " + d.frag.url : d.url ? " " + d.url : d.context && d.context.url ? " " + d.context.url : "";
        note("hls error", (d.fatal ? "fatal " : "") + d.type + " " + d.details + code + url + (d.reason ? " " + d.reason : ""));
      });
      player.on(Hls.Events.MANIFEST_PARSED, function () { note("hls manifest parsed"); video.play().catch(function () {}); });
      player.loadSource(source.relurl);
      player.attachMedia(video);
    });
    return true;
  }
  players["html5/application/vnd.apple.mpegurl"] = hls;
  players["html5/application/vnd.apple.mpegurl;version=7"] = hls;
  players["dash/video/mp4"] = function (video, source) {
    if (!window.MediaSource) { return false; }
    watch(video);
    lib("dashjs.js", function () {
      var player = window.dashjs.MediaPlayer().create();
      var ev = window.dashjs.MediaPlayer.events;
      window.mistDash = player;
      player.on(ev.ERROR, function (e) {
        var err = e.error || {};
        note("dash error", (err.code || "") + " " + (err.message || JSON.stringify(e.error)));
      });
      [ev.PLAYBACK_WAITING, ev.PLAYBACK_STALLED, ev.BUFFER_EMPTY].forEach(function (name) {
        player.on(name, function (e) { note("dash " + name, e.mediaType || ""); });
      });
      player.initialize(video, source.relurl, true);
    });
    return true;
  };
})();
</script>"""


@cache
def library(name: str) -> bytes:
    return resources.files("outputs.http.static").joinpath(LIBS[name]).read_bytes()


def register() -> None:
    register_player_script(SCRIPT % {"path": LIB_PATH})
    for name in LIBS:
        register_static(name, lambda req, name=name: serve(req, name))  # type: ignore[misc]


def serve(req: Request, name: str) -> Response:
    if name not in LIBS:
        return error_response(404, f"no player library {name!r}")
    return respond.body_response(
        req, library(name), "application/javascript", "public, max-age=86400"
    )
