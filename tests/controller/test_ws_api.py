"""The WebSocket API (/ws) of the real controller, with aiohttp's client."""

from __future__ import annotations

import hashlib
import time

import aiohttp

from tests.controller.conftest import base_config


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


async def _frame(ws: aiohttp.ClientWebSocketResponse, kind: str, pred=lambda body: True) -> list:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frame = await ws.receive_json(timeout=10)
        if frame[0] == kind and pred(frame[1]):
            return frame
    raise AssertionError(f"no {kind} frame")


async def test_websocket_logs_streams_and_auth(mist_factory) -> None:
    cfg = base_config(0)
    cfg["account"] = {"admin": {"password": md5("pw")}}
    mist = mist_factory(cfg)
    url = f"http://127.0.0.1:{mist.port}/ws"
    mist.api({"addstream": {"pre": {"source": "push://"}}}, "/api2")  # >= 2 log lines now
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url + "?logs=2&streams=1") as ws:
            assert await ws.receive_json(timeout=10) == ["auth", True]
            backlog = [await ws.receive_json(timeout=10) for _ in range(2)]
            assert all(f[0] == "log" and len(f[1]) == 7 for f in backlog), backlog
            assert "pre" in backlog[-1][1][2]
            live = await _frame(ws, "stream", lambda body: body[0] == "live")
            assert live[1] == ["live", 0, 0, 0, 0, []]
            await session.post(
                f"http://127.0.0.1:{mist.port}/api2",
                json={"addstream": {"wscam": {"source": "push://"}}},
            )
            line = await _frame(ws, "log", lambda body: "wscam" in body[2])
            assert line[1][1] == "CONF" and line[1][5] == "MistController"
            await _frame(ws, "stream", lambda body: body[0] == "wscam")
        proxied = {"X-Forwarded-For": "192.0.2.1"}
        async with session.ws_connect(url + "?logs=1", headers=proxied) as ws:
            assert await ws.receive_json(timeout=10) == ["auth", False]
            await ws.send_json(["auth", {"username": "admin", "password": "0" * 32}])
            assert await ws.receive_json(timeout=10) == ["auth", False]
            closing = await ws.receive(timeout=10)
            assert closing.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            )
        challenge = (
            await (
                await session.post(f"http://127.0.0.1:{mist.port}/api", json={}, headers=proxied)
            ).json(content_type=None)
        )["authorize"]["challenge"]
        async with session.ws_connect(url + "?logs=1", headers=proxied) as ws:
            assert await ws.receive_json(timeout=10) == ["auth", False]
            await ws.send_json(
                ["auth", {"username": "admin", "password": md5(md5("pw") + challenge)}]
            )
            assert await ws.receive_json(timeout=10) == ["auth", True]
            frame = await ws.receive_json(timeout=10)
            assert frame[0] == "log"
