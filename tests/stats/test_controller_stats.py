"""Sessions, statistics, access log, Prometheus and WebSocket frames with the real controller.

The test process plays an output: it reports connections with ``common.sessions``
(the same client MistOutHTTP/MistOutRTMP use) and fires triggers with
``common.triggers``; handlers are a real shell script and a real HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common import sessions, triggers
from tests.controller.conftest import Mist, base_config
from tests.triggers.handlers import HttpHandler, ScriptHandler

# Kicks are pushed to the reporter at once (and repeated in every 1 s update reply); the
# bound only catches a kick that never comes, it is no latency figure (a loaded CI machine).
KICK_S = 10.0


def start(
    mist_factory: Any, monkeypatch: pytest.MonkeyPatch, cfg: dict[str, Any], **kw: Any
) -> Mist:
    mist: Mist = mist_factory(cfg, **kw)
    monkeypatch.setenv("MIST_CONTROL", f"127.0.0.1:{mist.port}")
    monkeypatch.setenv("MIST_CHILD", "1")
    return mist


async def api(mist: Mist, obj: Any) -> Any:
    return await asyncio.to_thread(mist.api, obj, "/api2")


async def until(pred: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_user_new_denies_caches_and_invalidate_kicks(
    mist_factory: Any, monkeypatch: pytest.MonkeyPatch, http_handler: HttpHandler
) -> None:
    cfg = base_config(0)
    url = f"http://127.0.0.1:{http_handler.port}/user"
    cfg["config"]["triggers"] = {"USER_NEW": [{"handler": url, "sync": True}]}
    mist = start(mist_factory, monkeypatch, cfg)
    rep = sessions.Reporter("HTTP")
    http_handler.answers["USER_NEW"] = "false"
    denied = await rep.open("live", "10.9.8.7", token="bad", url="/live.flv?tkn=bad")
    assert not denied.allowed
    again = await rep.open("live", "10.9.8.7", token="bad", url="/live.flv?tkn=bad")
    assert not again.allowed and again.sessid == denied.sessid
    (call,) = http_handler.calls("USER_NEW")  # a denied session is not asked again
    assert call.body.split("\n") == [
        "live",
        "10.9.8.7",
        "bad",
        "HTTP",
        "/live.flv?tkn=bad",
        denied.sessid,
        "false",
    ]

    http_handler.answers["USER_NEW"] = "true"
    good = await rep.open("live", "10.9.8.7", token="good", url="/live.flv?tkn=good")
    assert good.allowed and good.sessid != denied.sessid
    good.down = 1000
    http_handler.answers["USER_NEW"] = "false"
    started = time.monotonic()
    await api(mist, {"invalidate_sessions": ["live"]})
    await asyncio.wait_for(good.kicked.wait(), KICK_S)
    assert time.monotonic() - started < KICK_S
    good.close()
    # The invalidated (now denied) session stays out; the cached denial is counted.
    assert not (await rep.open("live", "10.9.8.7", token="good")).allowed
    await rep.aclose()


async def test_stop_and_tag_commands(mist_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    mist = start(mist_factory, monkeypatch, base_config(0))
    rep = sessions.Reporter("RTMP")
    a = await rep.open("alpha", "10.0.0.1")
    b = await rep.open("alpha", "10.0.0.2", connector="HLS")
    c = await rep.open("beta", "10.0.0.3")
    d = await rep.open("beta", "10.0.0.4", kind="input")
    assert d.sessid.startswith("I") and not a.sessid.startswith("I")
    await api(mist, {"stop_sessions": {"alpha": "HLS"}})
    await asyncio.wait_for(b.kicked.wait(), KICK_S)
    assert not a.kicked.is_set()
    await api(mist, {"tag_sessid": {c.sessid: "naughty"}})
    await api(mist, {"stop_tag": "naughty"})
    await asyncio.wait_for(c.kicked.wait(), KICK_S)
    await api(mist, {"stop_sessid": [a.sessid]})
    await asyncio.wait_for(a.kicked.wait(), KICK_S)
    assert not d.kicked.is_set()
    await api(mist, {"tag_stream": {"beta": ["x", "y"]}})
    await api(mist, {"untag_stream": {"beta": "x"}})
    reply = await api(mist, {"stream_tags": ["beta"]})
    assert reply["stream_tags"] == {"beta": ["y"]}
    await api(mist, {"stop_sessions": "beta"})
    await asyncio.wait_for(d.kicked.wait(), KICK_S)
    await rep.aclose()


def _get(port: int, path: str) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.headers.get("Content-Type", ""), resp.read().decode()


async def test_clients_totals_prometheus_access_log(
    mist_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: ScriptHandler
) -> None:
    access = tmp_path / "access.log"
    cfg = base_config(0, session_linger=1)
    cfg["config"]["triggers"] = {
        "USER_END": [{"handler": str(script.path), "sync": False}],
        "CONN_OPEN": [{"handler": str(script.path), "sync": True}],
        "CONN_CLOSE": [{"handler": str(script.path), "sync": False}],
    }
    mist = start(mist_factory, monkeypatch, cfg, args=["-A", str(access), "-S", "metrics"])
    rep = sessions.Reporter("HTTP")
    viewers = [
        await rep.open("vstats", f"10.1.0.{i}", token=f"t{i}", url=f"/vstats.flv?i={i}")
        for i in range(3)
    ]
    pusher = await rep.open("vstats", "10.2.0.1", kind="input", connector="RTMP", url="rtmp://x")
    assert all(v.allowed for v in viewers) and pusher.allowed
    opened = sorted(c.payload for c in script.calls("CONN_OPEN"))
    assert opened == [
        *(["vstats", f"10.1.0.{i}", "HTTP", f"/vstats.flv?i={i}"] for i in range(3)),
        ["vstats", "10.2.0.1", "RTMP", "rtmp://x"],
    ]
    ws_frames: list[Any] = []

    async def read_ws() -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"http://127.0.0.1:{mist.port}/ws?accs=10") as ws,
        ):
            async for msg in ws:
                ws_frames.append(json.loads(msg.data))

    ws_task = asyncio.create_task(read_ws())
    seen: list[list[int]] = []
    for step in range(1, 4):
        for v in viewers:
            v.down = step * 10_000
        pusher.up = step * 30_000

        async def grown(step: int = step) -> Any:
            reply = await api(
                mist,
                {"clients": {"streams": ["vstats"], "fields": ["host", "down", "up", "protocol"]}},
            )
            rows = reply["clients"]["data"]
            if len(rows) == 4 and all(r[1] == step * 10_000 for r in rows if r[3] == "HTTP"):
                return rows
            return None

        rows = await until(grown, 30, f"counters step {step}")
        seen.append(sorted(r[1] for r in rows))
        assert sorted(r[0] for r in rows) == ["10.1.0.0", "10.1.0.1", "10.1.0.2", "10.2.0.1"]
    assert seen[0] < seen[1] < seen[2]  # growing byte counters

    fields = ["viewers", "inputs", "outputs", "downbytes", "upbytes", "views"]
    reply = await api(mist, {"active_streams": {"streams": ["vstats"], "fields": fields}})
    assert reply["active_streams"]["data"]["vstats"] == [3, 1, 0, 30_000 * 3, 90_000, 3]
    totals_req = {"totals": {"streams": ["vstats"], "fields": ["clients", "inputs", "downbps"]}}

    async def all_bytes() -> Any:  # every byte shows up in one second's rate or another
        found = (await api(mist, totals_req))["totals"]
        return found if sum(r[2] for r in found["data"]) == 30_000 * 3 else None

    totals = await until(all_bytes, 30, "totals")
    assert totals["fields"] == ["clients", "inputs", "downbps"]
    assert totals["data"][-1][:2] == [3, 1]
    assert totals["interval"] == [[len(totals["data"]), 1]]
    stats = await api(mist, {"stats_streams": ["viewers", "inputs"]})
    assert stats["stats_streams"]["vstats"] == [3, 1]

    ctype, text = await asyncio.to_thread(_get, mist.port, "/metrics")
    assert ctype.startswith("text/plain")
    parsed = list(text_string_to_metric_families(text))
    families = {f.name for f in parsed}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in parsed for s in f.samples
    }
    assert samples[("mist_sessions", (("sessType", "viewers"), ("stream", "vstats")))] == 3
    assert samples[("mist_sessions", (("sessType", "incoming"), ("stream", "vstats")))] == 1
    assert samples[("mist_bw", (("direction", "down"), ("stream", "vstats")))] == 90_000
    assert samples[("mist_outputs", (("output", "HTTP"),))] == 3
    assert samples[("mist_trigger_count_total", (("trigger", "CONN_OPEN"),))] == 4
    assert "mist_cpu" in families and "mist_logs" in families
    _, raw = await asyncio.to_thread(_get, mist.port, "/metrics.json")
    as_json = json.loads(raw)
    assert as_json["curr"][:3] == [3, 1, 0]
    assert as_json["streams"]["vstats"]["curr"] == [3, 1, 0, 0]
    assert as_json["triggers"]["CONN_OPEN"]["count"] == 4

    for v in viewers[:2]:
        v.close()
    lines = await until(
        lambda: asyncio.to_thread(lambda: access.exists() and access.read_text().splitlines()),
        10,
        "access log lines",
    )
    await asyncio.sleep(1.5)
    lines = access.read_text().splitlines()
    assert len(lines) == 2  # one per ended session, the others are still connected
    assert all(" on stream vstats" in line and "30000 B down" in line for line in lines)
    ends = await until(lambda: asyncio.to_thread(script.calls, "USER_END"), 30, "USER_END")
    assert sorted(c.payload[0] for c in ends) == ["t0", "t1"]
    for end in ends:
        assert end.payload[1:4] == ["vstats", "HTTP", f"10.1.0.{end.payload[0][1]}"]
        assert end.payload[6] == "30000" and len(end.payload) == 12
    closes = await until(lambda: asyncio.to_thread(script.calls, "CONN_CLOSE"), 30, "CONN_CLOSE")
    assert sorted(c.payload[3] for c in closes) == ["/vstats.flv?i=0", "/vstats.flv?i=1"]
    access_frames = await until(
        lambda: asyncio.sleep(0, [f for f in ws_frames if f[0] == "access"]), 5, "access frames"
    )
    entry = access_frames[0][1]
    assert entry[2:5] == ["vstats", "HTTP", entry[4]] and entry[7] == 30_000
    ws_task.cancel()
    await rep.aclose()


def _child_trigger_config(script: ScriptHandler, http_handler: HttpHandler) -> dict[str, Any]:
    url = f"http://127.0.0.1:{http_handler.port}/"
    cfg = base_config(0, defaultStream="fallback_$basename")
    cfg["config"]["triggers"] = {
        "PLAY_REWRITE": [{"handler": str(script.path), "sync": True}],
        "CONN_PLAY": [{"handler": url, "sync": True}],
        "USER_NEW": [{"handler": str(script.path), "sync": True, "default": "false"}],
        "LIVE_TRACK_LIST": [{"handler": url, "sync": False}],
    }
    return cfg


async def test_trigger_fire_from_children(
    mist_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    script: ScriptHandler,
    http_handler: HttpHandler,
) -> None:
    start(mist_factory, monkeypatch, _child_trigger_config(script, http_handler))
    script.answer("PLAY_REWRITE", "renamed\n")
    lines = ["orig", "10.0.0.1", "HTTP", "/orig.flv"]
    assert await triggers.fire_async("PLAY_REWRITE", lines, "orig") == "renamed"
    assert await asyncio.to_thread(triggers.fire, "PLAY_REWRITE", lines, "orig") == "renamed"
    assert [c.payload for c in script.calls("PLAY_REWRITE")] == [lines, lines]
    http_handler.answers["CONN_PLAY"] = "0"
    assert not await triggers.allowed_async("CONN_PLAY", lines, "orig")
    assert not await asyncio.to_thread(triggers.allowed, "CONN_PLAY", lines, "orig")
    assert await triggers.allowed_async("CONN_OPEN", lines, "orig")  # not configured
    assert await triggers.fire_async("CONN_OPEN", lines, "orig") is None
    triggers.fire_nowait("LIVE_TRACK_LIST", ["orig", '{"1": {}}'], "orig")
    await until(lambda: asyncio.sleep(0, http_handler.calls("LIVE_TRACK_LIST")), 30, "nowait")
    assert http_handler.calls("LIVE_TRACK_LIST")[0].body == 'orig\n{"1": {}}'
    # DEFAULT_STREAM not configured: the configured defaultStream, variables expanded.
    assert await triggers.default_stream_async("cam+one", "h", "HTTP", "/u") == "fallback_cam"


@pytest.mark.slow  # the real 10 s handler timeout (the unit test shortens it)
async def test_hanging_handler_times_out_into_default(
    mist_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    script: ScriptHandler,
    http_handler: HttpHandler,
) -> None:
    mist = start(mist_factory, monkeypatch, _child_trigger_config(script, http_handler))
    lines = ["orig", "10.0.0.1", "HTTP", "/orig.flv"]
    script.sleep("USER_NEW", 60)
    rep = sessions.Reporter("HTTP")
    hanging = asyncio.create_task(rep.open("slow", "10.0.0.9", url="/slow.flv"))
    await until(lambda: asyncio.to_thread(script.calls, "USER_NEW"), 30, "USER_NEW started")
    t0 = time.monotonic()
    for _ in range(5):
        assert await triggers.allowed_async("CONN_PLAY", lines, "orig")
    other = await rep.open("fast", "10.0.0.8", kind="input")
    assert other.allowed and time.monotonic() - t0 < 1.0  # not stalled by the hanging one
    conn = await asyncio.wait_for(hanging, 20)
    assert not conn.allowed  # SIGTERM after 10 s: the handler's default "false"
    stats = (await api(mist, {"trigger_stats": True}))["trigger_stats"]
    assert stats["USER_NEW"]["fails"] == 1 and stats["USER_NEW"]["ms"] >= 9_000
    assert stats["CONN_PLAY"]["count"] == 5
    await rep.aclose()


async def test_connections_survive_a_controller_restart(
    mist_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mist = start(mist_factory, monkeypatch, base_config(0))
    rep = sessions.Reporter("HTTP")
    conn = await rep.open("again", "10.3.0.1", token="x")
    conn.down = 5000
    fields = {"clients": {"streams": ["again"], "fields": ["sessid", "down"]}}

    async def listed() -> Any:
        rows = (await api(mist, fields))["clients"]["data"]
        return rows if rows == [[conn.sessid, 5000]] else None

    await until(listed, 30, "the connection")
    await asyncio.to_thread(mist.stop)
    await asyncio.to_thread(mist.start)
    await until(listed, 10, "the connection after the restart")
    assert not conn.kicked.is_set()
    await rep.aclose()
