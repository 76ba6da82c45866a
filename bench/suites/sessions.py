"""Sessions and triggers under load: 1,000 concurrent sessions reporting to a real controller.

A real ``MistController`` (no connectors) runs on free ports with a blocking ``USER_NEW``
and ``CONN_PLAY`` handler (a local HTTP server answering ``true``). This process plays
the outputs: 10 :class:`common.sessions.Reporter` s (as 10 output processes would) open
1,000 viewer sessions and report their byte counters every second.

* ``open_p50_ms``/``open_p99_ms``: ``session_open`` with its USER_NEW + session creation,
  1,000 opened concurrently in waves of 100.
* ``trigger_idle_*`` / ``trigger_loaded_*``: a blocking ``CONN_PLAY`` round trip
  (``common.triggers.fire_full_async``) with no sessions vs with the 1,000 sessions
  reporting; ``trigger_slowdown`` = loaded p99 / idle p99.
* ``clients_*_ms`` / ``totals_*_ms``: the ``clients`` and ``totals`` API commands over
  HTTP with 1,000 sessions (the stats views an operator polls).
* ``stats_visible_s``: from bumping every counter to ``totals`` showing the new rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

SESSIONS = 1000
REPORTERS = 10
TARGETS = {"trigger_slowdown": 2.0, "open_p99_ms": 50.0}


def _free_port() -> int:
    while True:
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return int(port)


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _api(port: int, obj: Any) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api2",
        data=json.dumps(obj).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def _measure(port: int, quick: bool) -> dict[str, Any]:
    from common import sessions, triggers

    result: dict[str, Any] = {}
    rounds = 100 if quick else 400

    async def trigger_round_trips() -> list[float]:
        out = []
        for i in range(rounds):
            t0 = time.perf_counter()
            reply = await triggers.fire_full_async(
                "CONN_PLAY", ["bench", "127.0.0.1", "HTTP", f"/bench.flv?{i}"], "bench"
            )
            out.append((time.perf_counter() - t0) * 1000)
            assert reply is not None and reply.allow
        return out

    idle = await trigger_round_trips()
    reporters = [sessions.Reporter(f"BENCH{i}") for i in range(REPORTERS)]
    conns: list[sessions.Connection] = []
    open_ms: list[float] = []

    async def open_one(i: int) -> None:
        t0 = time.perf_counter()
        conn = await reporters[i % REPORTERS].open(
            f"bench{i % 20}", f"10.{i // 250}.{i % 250}.1", token=f"t{i}", url="/x"
        )
        open_ms.append((time.perf_counter() - t0) * 1000)
        assert conn.allowed
        conns.append(conn)

    for wave in range(0, SESSIONS, 100):
        await asyncio.gather(*(open_one(i) for i in range(wave, wave + 100)))
    for conn in conns:
        conn.down = 1000
    await asyncio.sleep(2.5)  # every reporter reported at least twice
    loaded = await trigger_round_trips()

    def timed(obj: Any) -> tuple[float, Any]:
        t0 = time.perf_counter()
        reply = _api(port, obj)
        return (time.perf_counter() - t0) * 1000, reply

    clients_ms, totals_ms = [], []
    for _ in range(10 if quick else 30):
        ms, reply = await asyncio.to_thread(timed, {"clients": {"fields": ["sessid", "down"]}})
        clients_ms.append(ms)
        ms2, _ = await asyncio.to_thread(timed, {"totals": {"fields": ["clients", "downbps"]}})
        totals_ms.append(ms2)
    listed = len(reply["clients"]["data"])

    # Counters jump by 1 MB per connection: how long until totals shows that rate?
    t0 = time.perf_counter()
    for conn in conns:
        conn.down += 1_000_000
    visible = None
    while time.perf_counter() - t0 < 10:
        _, reply = await asyncio.to_thread(timed, {"totals": {"fields": ["downbps"], "start": -3}})
        rows = reply["totals"]["data"]
        if rows and rows[-1][0] >= SESSIONS * 1_000_000 * 0.9:
            visible = time.perf_counter() - t0
            break
        await asyncio.sleep(0.05)
    for reporter in reporters:
        await reporter.aclose()

    result.update(
        sessions=SESSIONS,
        clients_listed=listed,
        open_p50_ms=_pct(open_ms, 0.5),
        open_p99_ms=_pct(open_ms, 0.99),
        trigger_idle_p50_ms=_pct(idle, 0.5),
        trigger_idle_p99_ms=_pct(idle, 0.99),
        trigger_loaded_p50_ms=_pct(loaded, 0.5),
        trigger_loaded_p99_ms=_pct(loaded, 0.99),
        trigger_slowdown=round(_pct(loaded, 0.99) / max(_pct(idle, 0.99), 1e-6), 2),
        clients_p50_ms=round(statistics.median(clients_ms), 3),
        clients_p99_ms=_pct(clients_ms, 0.99),
        totals_p50_ms=round(statistics.median(totals_ms), 3),
        totals_p99_ms=_pct(totals_ms, 0.99),
        stats_visible_s=round(visible, 3) if visible is not None else None,
    )
    return result


def run(quick: bool) -> dict[str, Any]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        config = Path(tmp) / "config.json"
        hook = [{"handler": url, "sync": True}]
        config.write_text(
            json.dumps(
                {
                    "account": {},
                    "config": {
                        "controller": {},
                        "protocols": [],
                        "accesslog": "",
                        "triggers": {"USER_NEW": hook, "CONN_PLAY": hook},
                    },
                    "streams": {},
                }
            )
        )
        env = dict(os.environ, MIST_NO_BUILTIN="1", MIST_CONTROL=f"127.0.0.1:{port}")
        env.pop("MIST_CHILD", None)
        argv = ["-c", str(config), "-p", str(port), "-i", "127.0.0.1", "-g", "2"]
        proc = subprocess.Popen(
            [sys.executable, "-c", "from controller.cli import main; main()", *argv],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        saved = {k: os.environ.get(k) for k in ("MIST_CONTROL", "MIST_CHILD")}
        os.environ.update(MIST_CONTROL=f"127.0.0.1:{port}", MIST_CHILD="1")
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    _api(port, {"minimal": 1})
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the controller did not start") from None
                    time.sleep(0.1)
            result = asyncio.run(_measure(port, quick))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            server.shutdown()
            server.server_close()
    result["targets"] = TARGETS
    return result
