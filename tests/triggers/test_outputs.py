"""Access control and triggers through the real outputs under the real controller.

MistController runs MistOutRTMP and MistOutHTTP (with HLS/CMAF plugged in); ffmpeg
publishes and plays; the handlers are a real shell script and a real HTTP server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.sessions import session_id
from mistcodecs.hls import parse_master_playlist, parse_media_playlist
from tests.controller.conftest import Mist, base_config, free_port
from tests.controller.conftest import module_factory as module_factory
from tests.live.conftest import ffmpeg_publish, stop_proc, wait_for, wait_ready
from tests.outputs_http.media import decode
from tests.triggers.handlers import HttpHandler, ScriptHandler, encode_clip, serve_http


@pytest.fixture(scope="module")
def handler() -> Iterator[HttpHandler]:
    yield from serve_http()


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> ScriptHandler:
    return ScriptHandler(tmp_path_factory.mktemp("handler"))


@pytest.fixture(scope="module")
def vod_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_clip(tmp_path_factory.mktemp("media") / "clip.mp4", "320x240", 4)


def deny_bad(body: str) -> str:
    """USER_NEW: deny the token ``bad`` and tokens listed in the handler's deny file."""
    token = body.split("\n")[2]
    return "false" if token == "bad" or token in DENIED else "true"


DENIED: set[str] = set()
PROGRAMS = ("MistOutRTMP", "MistOutHTTP", "MistOutHLS", "MistOutEBML", "MistInBuffer", "MistInMP4")


@pytest.fixture(scope="module")
def mist(
    module_factory: Callable[..., Mist],
    handler: HttpHandler,
    script: ScriptHandler,
    vod_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Mist, int, int, Path]]:
    rtmp, http = free_port(), free_port()
    access = tmp_path_factory.mktemp("logs") / "access.log"
    url = f"http://127.0.0.1:{handler.port}/hook"
    handler.answers["USER_NEW"] = deny_bad
    sh = str(script.path)
    cfg = base_config(0, session_linger=1, defaultStream="nothing_here")
    cfg["config"]["protocols"] = [
        {"connector": "RTMP", "port": rtmp, "interface": "127.0.0.1", "timeout": 5},
        {"connector": "HTTP", "port": http, "interface": "127.0.0.1"},
        {"connector": "HLS"},
    ]
    cfg["config"]["triggers"] = {
        "USER_NEW": [{"handler": url, "sync": True}],
        "USER_END": [{"handler": sh, "sync": False, "streams": ["watched"]}],
        "CONN_OPEN": [{"handler": sh, "sync": True, "streams": ["watched"]}],
        "CONN_CLOSE": [
            {"handler": sh, "sync": False, "streams": ["watched"]},
            {"handler": url, "sync": False, "streams": ["vodend"]},
        ],
        "CONN_STOP": [{"handler": url, "sync": False, "streams": ["vodend"]}],
        "CONN_PLAY": [{"handler": sh, "sync": True, "streams": ["watched"]}],
        "STREAM_PUSH": [{"handler": sh, "sync": True, "streams": ["watched", "renamed"]}],
        "PUSH_REWRITE": [{"handler": sh, "sync": True, "streams": ["orig"]}],
        "RTMP_PUSH_REWRITE": [{"handler": url, "sync": True, "streams": ["orig2"]}],
        "STREAM_READY": [{"handler": sh, "sync": False, "streams": ["watched"]}],
        "STREAM_BUFFER": [{"handler": sh, "sync": False, "streams": ["watched"]}],
        "STREAM_END": [{"handler": sh, "sync": False, "streams": ["watched"]}],
        "LIVE_TRACK_LIST": [{"handler": sh, "sync": False, "streams": ["watched"]}],
        "PLAY_REWRITE": [{"handler": sh, "sync": True, "streams": ["alias"]}],
        "PUSH_OUT_START": [{"handler": sh, "sync": True, "streams": ["recd"]}],
        "PUSH_END": [{"handler": sh, "sync": False, "streams": ["recd"]}],
        "RECORDING_END": [{"handler": sh, "sync": False, "streams": ["recd"]}],
        "OUTPUT_END": [{"handler": sh, "sync": False, "streams": ["recd"]}],
        "DEFAULT_STREAM": [{"handler": sh, "sync": True}],
    }
    cfg["streams"] = {
        "live": {"name": "live", "source": "push://"},
        "watched": {"name": "watched", "source": "push://", "resume": 0},
        "renamed": {"name": "renamed", "source": "push://"},
        "renamed2": {"name": "renamed2", "source": "push://@pw"},
        "recd": {"name": "recd", "source": "push://"},
        "vod": {"name": "vod", "source": str(vod_file)},
        "vodend": {"name": "vodend", "source": str(vod_file)},
        "hlsone": {"name": "hlsone", "source": str(vod_file)},
    }
    script.answer("PUSH_REWRITE", "renamed")
    handler.answers["RTMP_PUSH_REWRITE"] = f"rtmp://127.0.0.1:{rtmp}/pw/renamed2"
    script.answer("DEFAULT_STREAM", "vod")
    script.answer("PLAY_REWRITE", "vod")
    with pytest.MonkeyPatch.context() as mp:  # only what these tests run: a faster -j scan
        mp.setenv("MIST_PROGRAMS", ",".join(PROGRAMS))
        m = module_factory(cfg, args=["-A", str(access), "-S", "metrics"], builtin=True)
    wait_for(lambda: [m.protocol_online(c) for c in ("RTMP", "HTTP")] == [[1], [1]], 60, "outputs")
    wait_for(lambda: _listening(rtmp) and _listening(http), 20, "connector ports")
    yield m, rtmp, http, access


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


def http_get(port: int, path: str, limit: int = 200_000) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
            return resp.status, resp.read(limit)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def rtmp_play(url: str, seconds: float, out: Path) -> int:
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-rw_timeout", "15000000", "-i", url,
         "-t", str(seconds), "-c", "copy", "-y", str(out)],
        timeout=60, stdin=subprocess.DEVNULL, capture_output=True,
    )  # fmt: skip
    return proc.returncode


def test_conn_stop_when_a_viewer_got_the_whole_file(
    mist: tuple[Mist, int, int, Path], handler: HttpHandler, tmp_path: Path
) -> None:
    """CONN_STOP (name; host; connector; an empty line, as MistServer sends it) when the
    output reaches the end of the data with the viewer still there, then CONN_CLOSE."""
    _, _, http, _ = mist
    status, body = http_get(http, "/vodend.flv", 10_000_000)
    assert status == 200
    (tmp_path / "whole.flv").write_bytes(body)
    assert decode(tmp_path / "whole.flv").video_frames >= 95  # 4 s at 25 fps, all of it
    (stop,) = wait_for(lambda: handler.calls("CONN_STOP"), 20, "CONN_STOP")
    assert stop.body.split("\n") == ["vodend", "127.0.0.1", "HTTP", ""]
    assert stop.headers["X-Trigger"] == "CONN_STOP"
    (close,) = wait_for(lambda: handler.calls("CONN_CLOSE"), 20, "CONN_CLOSE")
    assert close.body.split("\n") == ["vodend", "127.0.0.1", "HTTP", "/vodend.flv"]
    assert handler.received.index(stop) < handler.received.index(close)


def test_user_new_false_blocks_http_hls_and_rtmp(
    mist: tuple[Mist, int, int, Path], handler: HttpHandler, tmp_path: Path
) -> None:
    _, rtmp, http, _ = mist
    status, body = http_get(http, "/vod.flv?tkn=bad")
    assert status == 403 and b"denied" in body
    assert http_get(http, "/hls/vod/index.m3u8?tkn=bad")[0] == 403
    assert rtmp_play(f"rtmp://127.0.0.1:{rtmp}/live/vod?tkn=bad", 1, tmp_path / "x.flv") != 0
    # A denied session is cached: the handler was asked once for HTTP+HLS (same session).
    asked = [c.body.split("\n") for c in handler.calls("USER_NEW")]
    bad = [lines for lines in asked if lines[2] == "bad"]
    assert len(bad) == 1
    assert bad[0][:4] == ["vod", "127.0.0.1", "bad", "HTTP"] and bad[0][4] == "/vod.flv?tkn=bad"
    assert len(bad[0][5]) == 64 and bad[0][6] == "false"
    # Other tokens play on every protocol, and the result decodes.
    status, body = http_get(http, "/vod.flv?tkn=good", 10_000_000)
    assert status == 200
    (tmp_path / "good.flv").write_bytes(body)
    assert decode(tmp_path / "good.flv").video_frames >= 90
    status, playlist = http_get(http, "/hls/vod/index.m3u8?tkn=good")
    assert status == 200 and playlist.startswith(b"#EXTM3U")
    assert rtmp_play(f"rtmp://127.0.0.1:{rtmp}/live/vod?tkn=good2", 1, tmp_path / "r.flv") == 0
    assert decode(tmp_path / "r.flv").video_frames >= 20


def test_hls_requests_are_one_session(
    mist: tuple[Mist, int, int, Path], handler: HttpHandler, tmp_path: Path
) -> None:
    m, _, http, _ = mist
    out = tmp_path / "hls.ts"
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", f"http://127.0.0.1:{http}/hls/vod/index.m3u8?tkn=hls1",
         "-c", "copy", "-y", str(out)],
        timeout=60, capture_output=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert decode(out).video_frames >= 90
    fields = ["sessid", "down"]
    sessid = session_id("viewer", 14, "vod", "127.0.0.1", "hls1", "HLS")

    def counted() -> list[Any]:
        reply = m.api({"clients": {"streams": ["vod"], "protocols": ["HLS"], "fields": fields}})
        rows = [r for r in reply["clients"]["data"] if r[0] == sessid]
        assert len(rows) == 1  # playlist and tokenless segment requests: one session
        return rows if rows[0][1] >= out.stat().st_size * 0.9 else []

    wait_for(counted, 30, "the HLS session's bytes")
    asked = [c.body.split("\n") for c in handler.calls("USER_NEW")]
    assert [a[2] for a in asked if a[0] == "vod" and a[3] == "HLS"] == ["hls1"]


def test_hls_viewer_with_a_token_is_one_session_in_clients_and_totals(
    mist: tuple[Mist, int, int, Path], tmp_path: Path
) -> None:
    """``?tkn=`` on the master is carried into every playlist and segment URL, so an
    HLS viewer, however many requests it makes, is one session: the only row in
    ``clients`` for its stream and ``clients`` 1 in ``totals`` while it plays."""
    m, _, http, _ = mist
    master = http_get(http, "/hls/hlsone/index.m3u8?tkn=solo")[1].decode()
    (variant,) = parse_master_playlist(master).variants
    assert variant.uri.endswith("?tkn=solo"), master
    media = parse_media_playlist(http_get(http, f"/hls/hlsone/{variant.uri}")[1].decode())
    assert media.segments and all(s.uri.endswith("?tkn=solo") for s in media.segments)
    out = tmp_path / "hls.ts"
    viewer = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-nostdin", "-re", "-i",
         f"http://127.0.0.1:{http}/hls/hlsone/index.m3u8?tkn=solo", "-c", "copy", "-y", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    sessid = session_id("viewer", 14, "hlsone", "127.0.0.1", "solo", "HLS")
    seen: set[str] = set()
    clients: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while viewer.poll() is None and time.monotonic() < deadline:
            reply = m.api({"clients": {"streams": ["hlsone"], "fields": ["sessid", "down"]}})
            seen.update(r[0] for r in reply["clients"]["data"])
            totals = m.api({"totals": {"streams": ["hlsone"], "fields": ["clients"]}})
            clients.update(row[0] for row in totals["totals"]["data"][-1:])
            time.sleep(0.2)
        _, stderr = viewer.communicate(timeout=30)
        assert viewer.returncode == 0, stderr
    finally:
        stop_proc(viewer)
    assert decode(out).video_frames >= 90
    assert seen == {sessid}  # every sample, from the master to the last segment
    assert 1 in clients and max(clients) == 1


def _read_until_closed(port: int, path: str, result: dict[str, Any]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        total = 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            total += len(chunk)
            result["bytes"] = total
        result["closed_at"] = time.monotonic()


def test_invalidate_sessions_stops_playing_viewer_within_2s(
    mist: tuple[Mist, int, int, Path],
) -> None:
    import threading

    m, rtmp, http, _ = mist
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/live", 40)
    try:
        wait_ready("live", 30)
        result: dict[str, Any] = {}
        reader = threading.Thread(
            target=_read_until_closed, args=(http, "/live.flv?tkn=inv", result)
        )
        reader.start()
        wait_for(lambda: result.get("bytes", 0) > 50_000, 20, "the viewer to get data")
        assert "closed_at" not in result
        DENIED.add("inv")
        started = time.monotonic()
        m.api({"invalidate_sessions": ["live"]})
        reader.join(10)
        assert "closed_at" in result
        assert result["closed_at"] - started < 2.0
        status, _ = http_get(http, "/live.flv?tkn=inv", 100)  # and stays out
        assert status == 403
    finally:
        DENIED.discard("inv")
        stop_proc(pub)


def test_push_rewrite_renames_incoming_rtmp_push(
    mist: tuple[Mist, int, int, Path], script: ScriptHandler, tmp_path: Path
) -> None:
    m, rtmp, http, _ = mist
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/orig", 20)
    try:
        wait_ready("renamed", 30)
        (rewrite,) = script.calls("PUSH_REWRITE")
        assert rewrite.payload == [f"rtmp://127.0.0.1:{rtmp}/live/orig", "127.0.0.1", "orig"]
        (push,) = [c for c in script.calls("STREAM_PUSH") if c.payload[0] == "renamed"]
        assert push.payload == [
            "renamed",
            "127.0.0.1",
            "RTMP",
            f"rtmp://127.0.0.1:{rtmp}/live/orig",
        ]
        assert "orig" not in m.api({"active_streams": True})["active_streams"]
        status, body = http_get(http, "/renamed.flv?tkn=r", 300_000)
        assert status == 200
        (tmp_path / "renamed.flv").write_bytes(body)
        assert decode(tmp_path / "renamed.flv").video_frames > 0
    finally:
        stop_proc(pub)


def test_rtmp_push_rewrite_rewrites_the_url(
    mist: tuple[Mist, int, int, Path], handler: HttpHandler
) -> None:
    m, rtmp, _, _ = mist
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/orig2?x=1", 20)
    try:
        wait_ready("renamed2", 30)  # app "pw" from the new URL is the push password
        (call,) = handler.calls("RTMP_PUSH_REWRITE")
        assert call.body.split("\n") == [f"rtmp://127.0.0.1:{rtmp}/live/orig2?x=1", "127.0.0.1"]
        assert "orig2" not in m.api({"active_streams": True})["active_streams"]
    finally:
        stop_proc(pub)


def test_play_rewrite_serves_another_stream(
    mist: tuple[Mist, int, int, Path], script: ScriptHandler, tmp_path: Path
) -> None:
    _, _, http, _ = mist
    status, body = http_get(http, "/alias.flv?tkn=pr", 10_000_000)
    assert status == 200
    (tmp_path / "alias.flv").write_bytes(body)
    assert decode(tmp_path / "alias.flv").video_frames >= 90  # the VoD clip
    (call,) = script.calls("PLAY_REWRITE")
    assert call.payload == ["alias", "127.0.0.1", "HTTP", "/alias.flv?tkn=pr"]


def _push_api() -> bool:
    from controller import api

    return any(key == "push_start" for key, _ in api.COMMANDS)


@pytest.mark.skipif(not _push_api(), reason="push API not in COMMANDS")
def test_push_out_start_and_end_triggers(
    mist: tuple[Mist, int, int, Path], script: ScriptHandler, tmp_path: Path
) -> None:
    m, rtmp, _, _ = mist
    asked, rewritten = tmp_path / "asked.mkv", tmp_path / "rewritten.mkv"
    script.answer("PUSH_OUT_START", str(rewritten))
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/recd", 30)
    try:
        wait_ready("recd", 30)
        started = m.api({"push_start": ["recd", str(asked)]})
        assert "error" not in started, started
        (out_start,) = script.calls("PUSH_OUT_START")
        assert out_start.payload == ["recd", str(asked)]
        rows = wait_for(lambda: m.api({"push_list": True})["push_list"], 30, "the push")
        assert rows[0][3] == str(rewritten)
        wait_for(lambda: rewritten.exists() and rewritten.stat().st_size > 50_000, 20, "data")
        m.api({"push_stop": [rows[0][0]]})
        (end,) = wait_for(lambda: script.calls("PUSH_END"), 20, "PUSH_END")
        assert end.payload[:4] == [str(rows[0][0]), "recd", str(asked), str(rewritten)]
        assert isinstance(json.loads(end.payload[4]), list)
        assert isinstance(json.loads(end.payload[5]), dict)
        (rec,) = wait_for(lambda: script.calls("RECORDING_END"), 30, "RECORDING_END")
        (out,) = wait_for(lambda: script.calls("OUTPUT_END"), 30, "OUTPUT_END")
        assert rec.payload == out.payload and len(rec.payload) == 12
        assert rec.payload[:3] == ["recd", str(rewritten), "EBML"]
        assert int(rec.payload[3]) == rewritten.stat().st_size
        secs, start, stop, media, first, last = (int(v) for v in rec.payload[4:10])
        assert secs >= 0 and abs(secs - (stop - start)) <= 1 and abs(start - time.time()) < 120
        # real media times: last - first, and as long as what the file decodes to
        assert 0 <= first < last and media == last - first
        assert abs(media / 1000 - _duration(rewritten)) < 1.5
        assert rec.payload[10] == "CLEAN_STOP" and rec.payload[11]
        assert not asked.exists()
        assert decode(rewritten).video_frames > 0
    finally:
        stop_proc(pub)


def _duration(path: Path) -> float:
    """The media duration ffprobe reads back from a recording (seconds)."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv=p=0",
         "-select_streams", "v:0", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    times = [float(t) for t in out.split() if t.strip() and t != "N/A"]
    return max(times) - min(times)


def test_default_stream_serves_fallback(
    mist: tuple[Mist, int, int, Path], script: ScriptHandler, tmp_path: Path
) -> None:
    _, _, http, _ = mist
    status, body = http_get(http, "/nosuchstream.flv?tkn=d", 10_000_000)
    assert status == 200
    (tmp_path / "fallback.flv").write_bytes(body)
    assert decode(tmp_path / "fallback.flv").video_frames >= 90  # the 4 s VoD clip
    (call,) = [c for c in script.calls("DEFAULT_STREAM") if c.payload[1] == "nosuchstream"]
    assert call.payload == [
        "nothing_here",
        "nosuchstream",
        "127.0.0.1",
        "HTTP",
        "/nosuchstream.flv?tkn=d",
    ]


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_ffmpeg_viewers_in_clients_totals_prometheus_and_access_log(
    mist: tuple[Mist, int, int, Path], script: ScriptHandler
) -> None:
    m, rtmp, http, access = mist
    before = len(access.read_text().splitlines()) if access.exists() else 0
    pub = ffmpeg_publish(f"rtmp://127.0.0.1:{rtmp}/live/watched", 60)
    viewers: list[subprocess.Popen[bytes]] = []
    try:
        wait_ready("watched", 30)
        for url in (
            f"http://127.0.0.1:{http}/watched.flv?tkn=v1",
            f"http://127.0.0.1:{http}/watched.ts?tkn=v2",
            f"rtmp://127.0.0.1:{rtmp}/live/watched?tkn=v3",
        ):
            argv = ["ffmpeg", "-v", "error", "-nostdin", "-i", url, "-f", "null", "-"]
            viewers.append(
                subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        fields = ["sessid", "host", "protocol", "down", "up", "stream"]

        def rows() -> dict[str, list[Any]]:
            reply = m.api({"clients": {"streams": ["watched"], "fields": fields}})
            return {r[0]: r[1:] for r in reply["clients"]["data"]}

        def counted() -> dict[str, list[Any]] | None:
            found = rows()
            ok = len(found) == 4 and all(r[2] > 0 or r[3] > 0 for r in found.values())
            return found if ok else None

        first = wait_for(counted, 30, "3 viewers + 1 publisher with byte counts")
        assert sorted(r[1] for r in first.values()) == ["HTTP", "HTTP", "RTMP", "RTMP"]
        assert {r[0] for r in first.values()} == {"127.0.0.1"}
        publisher = [sid for sid, r in first.items() if sid.startswith("I")]
        assert len(publisher) == 1 and first[publisher[0]][1] == "RTMP"

        def grown() -> dict[str, list[Any]] | None:
            found = rows()
            if set(found) != set(first):
                return found  # a session came or went: the assertion below says so
            col = {sid: 3 if sid in publisher else 2 for sid in found}
            return found if all(r[col[s]] > first[s][col[s]] for s, r in found.items()) else None

        t_first = time.monotonic()  # the sessions last >= 2.5 s: USER_END's secs below
        later = wait_for(
            lambda: time.monotonic() - t_first >= 2.5 and grown(), 30, "byte counts to grow"
        )
        assert set(later) == set(first)
        for sid, row in later.items():
            if sid in publisher:
                assert row[3] > first[sid][3] > 0  # the publisher's upload grows
            else:
                assert row[2] > first[sid][2] > 0  # each viewer's download grows

        active = m.api(
            {"active_streams": {"streams": ["watched"], "fields": ["viewers", "inputs"]}}
        )
        assert active["active_streams"]["data"]["watched"] == [3, 1]
        totals = m.api({"totals": {"streams": ["watched"], "fields": ["clients", "inputs"]}})
        assert totals["totals"]["data"][-1] == [3, 1]
        metrics = _metrics(m.port)
        assert metrics[("mist_sessions", (("sessType", "viewers"), ("stream", "watched")))] == 3
        assert metrics[("mist_sessions", (("sessType", "incoming"), ("stream", "watched")))] == 1
        assert metrics[("mist_outputs", (("output", "HTTP"),))] >= 2

        opened = sorted(c.payload for c in script.calls("CONN_OPEN"))
        assert ["watched", "127.0.0.1", "HTTP", "/watched.flv?tkn=v1"] in opened
        assert [
            "watched",
            "127.0.0.1",
            "RTMP",
            f"rtmp://127.0.0.1:{rtmp}/live/watched?tkn=v3",
        ] in opened
        plays = sorted(c.payload for c in script.calls("CONN_PLAY"))
        assert ["watched", "127.0.0.1", "HTTP", "/watched.ts?tkn=v2"] in plays
        wait_for(lambda: script.calls("STREAM_BUFFER"), 30, "STREAM_BUFFER FULL")
    finally:
        for v in viewers:
            stop_proc(v)
        stop_proc(pub)

    def ended() -> list[str]:
        lines = access.read_text().splitlines() if access.exists() else []
        return [line for line in lines[before:] if "on stream watched" in line]

    (ready,) = script.calls("STREAM_READY")
    assert ready.payload == ["watched", "Buffer"]
    full = script.calls("STREAM_BUFFER")[0].payload
    assert full[:2] == ["watched", "FULL"] and len(full) == 3
    assert sorted(t["codec"] for k, t in json.loads(full[2]).items() if k != "issues") == [
        "AAC",
        "H264",
    ]
    track_list = script.calls("LIVE_TRACK_LIST")[0].payload
    assert track_list[0] == "watched" and len(track_list) == 2
    codecs = sorted((t["type"], t["codec"]) for t in json.loads(track_list[1]).values())
    assert codecs == [("audio", "AAC"), ("video", "H264")]
    lines = wait_for(lambda: len(ended()) >= 4 and ended(), 20, "access log lines")
    time.sleep(1.5)
    assert len(ended()) == 4  # one per session: three viewers and the publisher
    ends = wait_for(lambda: len(script.calls("USER_END")) >= 3 and script.calls("USER_END"), 30)
    assert sorted(c.payload[0] for c in ends) == ["v1", "v2", "v3"]
    protocols = {"v1": "HTTP", "v2": "HTTP", "v3": "RTMP"}
    for end in ends:  # token; streams; connectors; hosts; secs; up; down; tags; per-x secs; id
        token, stream, connector, host, secs, up, down, tags, *per, sessid = end.payload
        assert (stream, connector, host, tags) == ("watched", protocols[token], "127.0.0.1", "")
        assert int(secs) >= 2 and int(up) >= 0 and int(down) > 50_000
        # connection-seconds per host, connector, stream (the session lingers 1 s more)
        names = [p.rpartition(":")[0] for p in per]
        assert names == ["127.0.0.1", connector, "watched"]
        assert all(int(secs) - 2 <= int(p.rpartition(":")[2]) <= int(secs) for p in per)
        assert sessid == session_id("viewer", 14, "watched", "127.0.0.1", token, connector)
    closes = [c.payload for c in script.calls("CONN_CLOSE")]
    assert ["watched", "127.0.0.1", "HTTP", "/watched.flv?tkn=v1"] in closes
    assert lines
    (end,) = wait_for(lambda: script.calls("STREAM_END"), 20, "STREAM_END")
    name, down, up, views, inputs, outputs, viewsecs = end.payload
    assert (name, views, inputs, outputs) == ("watched", "3", "1", "0")
    assert int(down) > 100_000 and int(up) > 100_000 and int(viewsecs) >= 6
    assert ["watched", "EMPTY"] in [c.payload for c in script.calls("STREAM_BUFFER")]
    stats = m.api({"trigger_stats": True})["trigger_stats"]
    assert stats["CONN_OPEN"]["count"] >= 4 and stats["CONN_OPEN"]["fails"] == 0
    assert json.dumps(stats)
